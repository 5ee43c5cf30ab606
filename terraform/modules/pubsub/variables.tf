variable "project_id" {
  description = "Project of the topics."
  type        = string
}

variable "topic_name" {
  description = "Name of the dispatch topic (AGENTFLEET_PUBSUB_TOPIC)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,254}$", var.topic_name)) && !startswith(var.topic_name, "goog")
    error_message = "Topic names are 3-255 characters, start with a letter and do not start with 'goog'."
  }
}

variable "message_retention" {
  description = "How long the topic keeps published messages (lets a subscription seek back)."
  type        = string
  default     = "86400s"
}

variable "dead_letter_retention" {
  description = "How long the dead-letter subscription keeps a message (at most 7 days)."
  type        = string
  default     = "604800s"
}

variable "labels" {
  description = "Labels of the topics and the subscription."
  type        = map(string)
  default     = {}
}
