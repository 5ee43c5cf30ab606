variable "project_id" {
  description = "Project of the grants."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services."
  type        = string
}

variable "deployment_name" {
  description = "Prefix of the custom role ids."
  type        = string
}

variable "service_accounts" {
  description = "Service account e-mail by component key (modules/service-accounts output emails)."
  type        = map(string)

  validation {
    condition = length(setsubtract(
      ["orchestrate", "dispatch", "dispatch_trigger", "reap", "scheduler", "agent", "gpt_oss", "mcp", "mcp_media", "toolbox", "build"],
      keys(var.service_accounts)
    )) == 0
    error_message = "service_accounts needs orchestrate, dispatch, dispatch_trigger, reap, scheduler, agent, gpt_oss, mcp, mcp_media, toolbox and build."
  }
}

variable "service_account_ids" {
  description = "Service account resource id (projects/P/serviceAccounts/E) by component key."
  type        = map(string)
}

variable "bucket" {
  description = "The deployment's bucket."
  type        = string
}

variable "repository_id" {
  description = "The Artifact Registry repository the functions' builds push to."
  type        = string
}

variable "topic_id" {
  description = "The dispatch topic (projects/P/topics/T)."
  type        = string
}

variable "dead_letter_topic_id" {
  description = "The dead-letter topic (projects/P/topics/T)."
  type        = string
}

variable "secret_ids" {
  description = "Secret id by short name (llm-api-key, git-token; toolbox-config, toolbox-db-user, toolbox-db-password with the toolbox)."
  type        = map(string)
}

variable "services" {
  description = "Cloud Run service names: the functions' underlying services, gpt-oss, and mcp: each deployed shared MCP service by its server name (media, computer, a2a, db)."
  type = object({
    orchestrate = string
    dispatch    = string
    reap        = string
    gpt_oss     = string
    mcp         = optional(map(string), {})
  })
}

variable "invokers" {
  description = "IAM members allowed to call the API (roles/run.invoker on orchestrate); never allUsers or allAuthenticatedUsers."
  type        = list(string)

  validation {
    condition     = alltrue([for m in var.invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "The API is not public: name users, groups or service accounts, not allUsers or allAuthenticatedUsers."
  }

  validation {
    condition     = alltrue([for m in var.invokers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+", m))])
    error_message = "Each invoker is an IAM member such as user:alice@example.com or serviceAccount:ci@p.iam.gserviceaccount.com."
  }
}
