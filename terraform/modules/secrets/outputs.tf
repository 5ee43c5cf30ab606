output "ids" {
  description = "Secret id (e.g. agentfleet-llm-api-key) by short name (llm-api-key)."
  value       = { for k, s in google_secret_manager_secret.this : k => s.secret_id }
}

output "names" {
  description = "Full resource name projects/P/secrets/S by short name."
  value       = { for k, s in google_secret_manager_secret.this : k => s.name }
}
