output "topic_name" {
  description = "Short name of the dispatch topic (AGENTFLEET_PUBSUB_TOPIC)."
  value       = google_pubsub_topic.tasks.name
}

output "topic_id" {
  description = "projects/P/topics/T of the dispatch topic."
  value       = google_pubsub_topic.tasks.id
}

output "dead_letter_topic_id" {
  description = "projects/P/topics/T of the dead-letter topic."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_topic_name" {
  description = "Short name of the dead-letter topic."
  value       = google_pubsub_topic.dead_letter.name
}

output "dead_letter_subscription" {
  description = "The subscription holding dead-lettered messages."
  value       = google_pubsub_subscription.dead_letter.name
}
