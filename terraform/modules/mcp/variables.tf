variable "project_id" {
  description = "Project of the service."
  type        = string
}

variable "region" {
  description = "Region of the service."
  type        = string
}

variable "name" {
  description = "Service name, <deployment>-mcp-<server> (at most 49 characters, and short enough for a deterministic URL)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,48}$", var.name)) && !endswith(var.name, "-")
    error_message = "A Cloud Run service name is 1-49 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "description" {
  description = "What the server serves (in the service's description)."
  type        = string
}

variable "image" {
  description = "The server's image: the mcp image (REGION-docker.pkg.dev/PROJECT/DEPLOYMENT/mcp:TAG) or Google's toolbox image."
  type        = string
}

variable "args" {
  description = "Arguments of the image's entry point (the mcp image: the server's module name, then its options)."
  type        = list(string)
  default     = []
}

variable "host_flag" {
  description = "An option by which the server learns its own host name, passed as FLAG=HOST (the toolbox: --allowed-hosts); '' for none."
  type        = string
  default     = ""
}

variable "env" {
  description = "Plain environment variables of the container (no secrets: use secret_env)."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variables from Secret Manager: name → secret id (its latest version)."
  type        = map(string)
  default     = {}
}

variable "secret_file" {
  description = "One file from Secret Manager (its latest version): the path in the container, read-only, and the secret id; null for none."
  type = object({
    path   = string
    secret = string
  })
  default = null
}

variable "path" {
  description = "Path of the streamable HTTP endpoint."
  type        = string
  default     = "/mcp"
}

variable "service_account" {
  description = "Service account e-mail the service runs as."
  type        = string
}

variable "cpu" {
  description = "CPUs of one instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory of one instance (at least 512Mi with one CPU)."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory is like 1Gi or 512Mi."
  }
}

variable "max_instances" {
  description = "Most instances at once."
  type        = number
  default     = 3
}

variable "max_concurrency" {
  description = "Requests one instance takes at once."
  type        = number
  default     = 20
}

variable "request_timeout_s" {
  description = "Longest request in seconds (a tool call that waits, such as an A2A task, needs more than the default)."
  type        = number
  default     = 300

  validation {
    condition     = var.request_timeout_s >= 1 && var.request_timeout_s <= 3600
    error_message = "request_timeout_s is between 1 and 3600 (Cloud Run's limit)."
  }
}

variable "labels" {
  description = "Labels of the service and its revisions."
  type        = map(string)
  default     = {}
}
