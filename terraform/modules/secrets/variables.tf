variable "project_id" {
  description = "Project of the secrets."
  type        = string
}

variable "region" {
  description = "The one region the secrets are replicated to (next to the services reading them)."
  type        = string
}

variable "deployment_name" {
  description = "Prefix of the secret ids."
  type        = string
}

variable "secret_names" {
  description = "Secret names after the prefix: <deployment_name>-<name>."
  type        = list(string)
  default     = ["llm-api-key", "git-token"]
}

variable "labels" {
  description = "Labels of the secrets."
  type        = map(string)
  default     = {}
}
