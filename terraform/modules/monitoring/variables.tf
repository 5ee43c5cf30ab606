variable "project_id" {
  description = "Project of the metrics, dashboard and alert policy."
  type        = string
}

variable "region" {
  description = "Region of the deployment (part of the Eventarc subscription's name)."
  type        = string
}

variable "deployment_name" {
  description = "Deployment name (metric name prefix, dashboard title)."
  type        = string
}

variable "function_services" {
  description = "Cloud Run service of each function: orchestrate, dispatch, reap (their logs' service_name)."
  type = object({
    orchestrate = string
    dispatch    = string
    reap        = string
  })
}

variable "gpt_oss_service" {
  description = "Name of the gpt-oss Cloud Run service."
  type        = string
}

variable "dead_letter_subscription" {
  description = "The dead-letter subscription's name."
  type        = string
}

variable "alert_email" {
  description = "E-mail address alerts go to; '' for none (the policy still opens incidents in the console)."
  type        = string
  default     = ""

  validation {
    condition     = var.alert_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email is an e-mail address or ''."
  }
}

variable "agent_error_threshold" {
  description = "ERROR entries of agent jobs in 5 minutes above which the alert fires."
  type        = number
  default     = 0
}

variable "queue_wait_threshold_s" {
  description = "Age (s) of the oldest undispatched message above which (for 5 minutes) the alert fires."
  type        = number
  default     = 900
}

variable "labels" {
  description = "Labels of the dashboard, the notification channel and the alert policy."
  type        = map(string)
  default     = {}
}
