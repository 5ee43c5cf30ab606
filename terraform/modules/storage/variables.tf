variable "project_id" {
  description = "Project of the bucket."
  type        = string
}

variable "name" {
  description = "Globally unique bucket name (GCS_BUCKET)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.name))
    error_message = "Bucket names are 3-63 lower-case letters, digits, '.', '_' and '-'."
  }
}

variable "location" {
  description = "Bucket location; the region of the deployment keeps the GPU service's reads of the weights regional."
  type        = string
}

variable "artifacts_prefix" {
  description = "AGENTFLEET_ARTIFACTS_PREFIX: the key prefix the code puts before every artifact ('' for none)."
  type        = string
  default     = ""
}

variable "task_artifact_retention_days" {
  description = "Days a task's patch and event log (tasks/) are kept."
  type        = number
  default     = 30

  validation {
    condition     = var.task_artifact_retention_days >= 1
    error_message = "Keep task artifacts at least one day."
  }
}

variable "input_retention_days" {
  description = "Days an uploaded input file (inputs/) is kept."
  type        = number
  default     = 30

  validation {
    condition     = var.input_retention_days >= 1
    error_message = "Keep input files at least one day."
  }
}

variable "snapshot_retention_days" {
  description = "Days a workspace snapshot (snapshots/) is kept after its last save: a workspace idle longer starts from a fresh clone."
  type        = number
  default     = 14

  validation {
    condition     = var.snapshot_retention_days >= 1
    error_message = "Keep snapshots at least one day."
  }
}

variable "functions_source_retention_days" {
  description = "Days a functions source archive (functions/) is kept."
  type        = number
  default     = 90
}

variable "noncurrent_retention_days" {
  description = "Days a replaced or deleted object generation is kept."
  type        = number
  default     = 7
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels of the bucket."
  type        = map(string)
  default     = {}
}
