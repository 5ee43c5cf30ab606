variable "project_id" {
  description = "Project of the service accounts."
  type        = string
}

variable "deployment_name" {
  description = "Prefix of the account ids (<deployment_name>-<component>, at most 30 characters)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,19}$", var.deployment_name))
    error_message = "Use 3-20 lower-case letters, digits and hyphens, starting with a letter."
  }
}
