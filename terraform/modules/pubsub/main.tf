# The dispatch topic: orchestrate, the reaper and the agent publish one DispatchMessage per attempt
# (gcp/queue.py, ordering key = workspace id); Eventarc delivers each to the dispatch function.
resource "google_pubsub_topic" "tasks" {
  project                    = var.project_id
  name                       = var.topic_name
  labels                     = var.labels
  message_retention_duration = var.message_retention
}

# Where a message the dispatcher kept failing on goes after max_delivery_attempts: nothing is lost,
# a person reads it from the subscription below.
resource "google_pubsub_topic" "dead_letter" {
  project = var.project_id
  name    = "${var.topic_name}-dead-letter"
  labels  = var.labels
}

resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.topic_name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false

  # Never expire for inactivity: it is read rarely, by hand.
  expiration_policy {
    ttl = ""
  }
}
