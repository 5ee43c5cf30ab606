variable "project_id" {
  description = "Project of the database."
  type        = string
}

variable "database_id" {
  description = "Firestore database id (AGENTFLEET_FIRESTORE_DATABASE); '(default)' or a named database."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.database_id == "(default)" || can(regex("^[a-z][a-z0-9-]{3,61}[a-z0-9]$", var.database_id))
    error_message = "Use '(default)' or 4-63 lower-case letters, digits and hyphens starting with a letter."
  }
}

variable "location" {
  description = "Firestore location id (a region such as us-central1, or a multi-region such as nam5)."
  type        = string
}

variable "tasks_collection" {
  description = "Collection of tasks (AGENTFLEET_TASKS_COLLECTION): where the indexes of 'tasks' in the file go."
  type        = string
  default     = "tasks"
}

variable "indexes_file" {
  description = "Path of firestore_indexes.json; null: the file in this repository's src/agentfleet/gcp/."
  type        = string
  default     = null
}

variable "point_in_time_recovery" {
  description = "Keep 7 days of point-in-time recovery (billed as storage)."
  type        = bool
  default     = false
}

variable "delete_protection" {
  description = "Refuse to delete the database (and abandon it rather than delete it on destroy)."
  type        = bool
  default     = true
}
