variable "project_id" {
  description = "Project the APIs are enabled in."
  type        = string
}

variable "services" {
  description = "API service names to enable (e.g. run.googleapis.com)."
  type        = list(string)

  validation {
    condition     = alltrue([for s in var.services : can(regex("^[a-z0-9.-]+\\.googleapis\\.com$", s))])
    error_message = "Each service must be an API name ending in .googleapis.com."
  }
}
