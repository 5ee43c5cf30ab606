variable "project_id" {
  description = "Project of the repository."
  type        = string
}

variable "region" {
  description = "Region of the repository (the images' host is REGION-docker.pkg.dev)."
  type        = string
}

variable "repository_id" {
  description = "Repository id: the deployment name."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.repository_id))
    error_message = "Repository ids are lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "untagged_retention_days" {
  description = "Days an untagged image is kept before the cleanup policy deletes it."
  type        = number
  default     = 14

  validation {
    condition     = var.untagged_retention_days >= 1
    error_message = "Keep untagged images at least one day."
  }
}

variable "cleaned_packages" {
  description = "Image names whose untagged versions the cleanup policy deletes."
  type        = list(string)
  default     = ["agent", "gpt-oss", "mcp"]
}

variable "labels" {
  description = "Labels of the repository."
  type        = map(string)
  default     = {}
}
