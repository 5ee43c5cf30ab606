output "database_id" {
  description = "The database id (AGENTFLEET_FIRESTORE_DATABASE)."
  value       = google_firestore_database.this.name
}

output "index_count" {
  description = "Composite indexes created from firestore_indexes.json."
  value       = length(google_firestore_index.tasks)
}
