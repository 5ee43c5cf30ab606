variable "project_id" {
  description = "Project of the functions."
  type        = string
}

variable "region" {
  description = "Region of the functions, the trigger and the scheduler job."
  type        = string
}

variable "deployment_name" {
  description = "Prefix of the function names."
  type        = string
}

variable "labels" {
  description = "Labels of the functions."
  type        = map(string)
  default     = {}
}

variable "source_zip" {
  description = "Local path of the functions archive scripts/stage-functions.sh makes (main.py, requirements.txt, wheels/)."
  type        = string

  validation {
    condition     = endswith(var.source_zip, ".zip")
    error_message = "functions_source_zip is the .zip archive of the staged functions folder."
  }
}

variable "runtime" {
  description = "Cloud Functions Python runtime."
  type        = string
  default     = "python311"

  validation {
    condition     = can(regex("^python3(1[1-9])$", var.runtime))
    error_message = "AgentFleet needs Python 3.11 or later (python311, python312, ...)."
  }
}

variable "build_environment" {
  description = "Build-time environment of the buildpack; GOOGLE_VENDOR_PIP_DEPENDENCIES installs from the staged folder's wheels/ with no index."
  type        = map(string)
  default     = { GOOGLE_VENDOR_PIP_DEPENDENCIES = "wheels" }
}

variable "build_service_account_id" {
  description = "Service account Cloud Build runs the functions' builds as (projects/P/serviceAccounts/E)."
  type        = string
}

variable "docker_repository" {
  description = "Artifact Registry repository the functions' images are built into (projects/P/locations/R/repositories/NAME)."
  type        = string
}

variable "service_accounts" {
  description = "Service account e-mails by component: orchestrate, dispatch, dispatch_trigger, reap, scheduler."
  type        = map(string)
}

variable "bucket" {
  description = "The deployment's bucket (GCS_BUCKET; the source archive goes under functions/)."
  type        = string
}

variable "topic_id" {
  description = "The dispatch topic, projects/P/topics/T (the trigger's topic)."
  type        = string
}

variable "topic_name" {
  description = "Short name of the dispatch topic (AGENTFLEET_PUBSUB_TOPIC)."
  type        = string
}

variable "firestore_database" {
  description = "AGENTFLEET_FIRESTORE_DATABASE."
  type        = string
}

variable "tasks_collection" {
  description = "AGENTFLEET_TASKS_COLLECTION."
  type        = string
  default     = "tasks"
}

variable "gpt_oss_url" {
  description = "GPT_OSS_URL: the OpenAI-compatible base URL of the model service (ending in /v1)."
  type        = string
}

variable "model" {
  description = "AGENTFLEET_MODEL: the model name the endpoint serves."
  type        = string
}

variable "model_profile" {
  description = "AGENTFLEET_MODEL_PROFILE."
  type        = string
  default     = "gpt-oss"
}

variable "reasoning_effort" {
  description = "AGENTFLEET_REASONING_EFFORT sent to the model."
  type        = string
  default     = "high"

  validation {
    condition     = contains(["low", "medium", "high"], var.reasoning_effort)
    error_message = "reasoning_effort is low, medium or high."
  }
}

variable "mcp_servers" {
  description = "AGENTFLEET_MCP_SERVERS: shared MCP servers by name → URL."
  type        = map(string)
  default     = {}
}

variable "job" {
  description = "What the dispatcher creates each workspace's agent job with (AGENTFLEET_JOB_*); secrets: env var name in the job → Secret Manager secret version."
  type = object({
    image           = string
    service_account = string
    cpu             = string
    memory          = string
    timeout_s       = number
    max_retries     = number
    sandbox         = string
    secrets         = map(string)
  })

  validation {
    condition     = contains(["bwrap", "none"], var.job.sandbox)
    error_message = "job.sandbox is bwrap or none."
  }

  validation {
    condition     = var.job.timeout_s >= 60 && var.job.max_retries >= 0 && var.job.max_retries <= 10
    error_message = "job.timeout_s is at least 60 and job.max_retries between 0 and 10 (Settings' bounds)."
  }

  validation {
    condition     = alltrue([for v in values(var.job.secrets) : can(regex("^projects/[^/]+/secrets/[^/]+/versions/[^/]+$", v))])
    error_message = "Each job secret is a secret version resource: projects/P/secrets/S/versions/V."
  }
}

variable "orchestrate" {
  description = "Sizing of the orchestrate function."
  type = object({
    max_instances = optional(number, 10)
    concurrency   = optional(number, 20)
    cpu           = optional(string, "1")
    memory        = optional(string, "1Gi")
    timeout_s     = optional(number, 900)
  })
  default = {}
}

variable "dispatch" {
  description = "Sizing of the dispatch function (a launch waits up to ~90 s for a job to be created or updated)."
  type = object({
    max_instances = optional(number, 10)
    concurrency   = optional(number, 10)
    cpu           = optional(string, "1")
    memory        = optional(string, "512Mi")
    timeout_s     = optional(number, 300)
  })
  default = {}

  validation {
    condition     = var.dispatch.timeout_s <= 540
    error_message = "An event-driven function may run at most 540 s."
  }
}

variable "reap" {
  description = "Sizing of the reap function."
  type = object({
    cpu       = optional(string, "1")
    memory    = optional(string, "512Mi")
    timeout_s = optional(number, 300)
  })
  default = {}
}

variable "reap_schedule" {
  description = "Cron schedule of the reaper (the heartbeat timeout is 60 s: every minute)."
  type        = string
  default     = "* * * * *"
}

variable "dead_letter" {
  description = "Dead-lettering of the dispatch trigger's subscription; configure runs terraform/modules/functions/dead-letter.sh (needs gcloud where terraform runs)."
  type = object({
    configure             = bool
    topic_id              = string
    pubsub_service_agent  = string
    max_delivery_attempts = optional(number, 10)
  })

  validation {
    condition     = var.dead_letter.max_delivery_attempts >= 5 && var.dead_letter.max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}
