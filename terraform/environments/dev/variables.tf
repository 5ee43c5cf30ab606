variable "project_id" {
  description = "Google Cloud project to deploy into (PROJECT_ID)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "A project id is 6-30 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of everything (REGION); it must offer Cloud Run L4 GPUs (us-central1, europe-west1, europe-west4, asia-southeast1, ...)."
  type        = string
  default     = "us-central1"
}

variable "deployment_name" {
  description = "Name prefix of every resource and the value of the agentfleet-deployment label."
  type        = string
  default     = "agentfleet"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,19}$", var.deployment_name)) && !endswith(var.deployment_name, "-")
    error_message = "Use 3-20 lower-case letters, digits and hyphens, starting with a letter (service account ids allow 30 characters in all)."
  }
}

variable "bucket_name" {
  description = "Globally unique name of the bucket of artifacts, snapshots, model weights and function sources (GCS_BUCKET)."
  type        = string
}

variable "agent_image" {
  description = "Agent container image (AGENTFLEET_JOB_IMAGE), e.g. us-central1-docker.pkg.dev/PROJECT/agentfleet/agent:TAG."
  type        = string
}

variable "gpt_oss_image" {
  description = "The gpt-oss vLLM image, e.g. us-central1-docker.pkg.dev/PROJECT/agentfleet/gpt-oss:TAG."
  type        = string
}

variable "mcp_image" {
  description = "Image of AgentFleet's MCP servers (REGION-docker.pkg.dev/PROJECT/DEPLOYMENT/mcp:TAG); deployed only with deploy_mcp."
  type        = string
  default     = ""
}

variable "deploy_mcp" {
  description = "Deploy each server of mcp_servers_deployed from mcp_image as its own private Cloud Run service, listed in AGENTFLEET_MCP_SERVERS under its name (replacing the agent's stdio server of that name)."
  type        = bool
  default     = false
}

variable "mcp_servers_deployed" {
  description = "AgentFleet's MCP servers deployed as services with deploy_mcp: media (genmedia), computer, a2a (a2a_bridge). Not code: the code assistant reads the task's checkout, which only the agent's job has; db is deploy_toolbox."
  type        = list(string)
  default     = ["media", "computer", "a2a"]

  validation {
    condition     = alltrue([for name in var.mcp_servers_deployed : contains(["media", "computer", "a2a"], name)])
    error_message = "mcp_servers_deployed takes media, computer and a2a. code runs inside the agent's job (it reads the task's checkout); db is deployed with deploy_toolbox."
  }
}

variable "mcp_server_args" {
  description = "More options of a deployed server by name, after the deployment's own, e.g. {computer = [\"--allow-host\", \"staging.example.com\"], a2a = [\"--agent\", \"fleet=https://...\"]}."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.mcp_server_args) : contains(["media", "computer", "a2a"], name)])
    error_message = "mcp_server_args is keyed by media, computer or a2a."
  }
}

variable "deploy_toolbox" {
  description = "Deploy Google's MCP Toolbox for Databases (toolbox_image) as the db service; its tools.yaml and database user and password are the toolbox-* secrets, which need versions before the service can start."
  type        = bool
  default     = false
}

variable "toolbox_image" {
  description = "Google's published toolbox image (the version AgentFleet's tools.yaml is made and tested for: mcp_servers/toolbox/package.json)."
  type        = string
  default     = "us-central1-docker.pkg.dev/database-toolbox/toolbox/toolbox:1.12.0"
}

variable "functions_source_zip" {
  description = "Local path of the functions archive scripts/stage-functions.sh makes; uploaded as functions/<md5>.zip."
  type        = string
}

variable "gpt_oss_model" {
  description = "The model the service serves and the agent asks for (AGENTFLEET_MODEL); its weights are in the bucket under models/<last part of the name>/."
  type        = string
  default     = "openai/gpt-oss-20b"
}

variable "gpt_oss_max_instances" {
  description = "Most gpt-oss GPU instances (one L4 each); it scales to zero when idle."
  type        = number
  default     = 1

  validation {
    condition     = var.gpt_oss_max_instances >= 1 && var.gpt_oss_max_instances <= 10
    error_message = "gpt_oss_max_instances is between 1 and 10 (mind the L4 quota)."
  }
}

variable "gpt_oss_max_concurrency" {
  description = "Requests one gpt-oss instance takes at once (vLLM batches them)."
  type        = number
  default     = 32
}

variable "invokers" {
  description = "IAM members allowed to call the API, e.g. [\"user:alice@example.com\", \"group:team@example.com\"]; never allUsers or allAuthenticatedUsers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "The API is not public: name users, groups or service accounts."
  }
}

variable "alert_email" {
  description = "E-mail address for alerts on failing or stuck tasks; '' for none."
  type        = string
  default     = ""
}

variable "use_git_token" {
  description = "Give the agent jobs the git-token secret as AGENTFLEET_GIT_TOKEN (only once the secret has a version: scripts/deploy.sh sets it when AGENTFLEET_GIT_TOKEN is given)."
  type        = bool
  default     = false
}

variable "agent_sandbox" {
  description = "AGENTFLEET_JOB_SANDBOX: bwrap (commands in bubblewrap inside the job), or none (the container is the only sandbox)."
  type        = string
  default     = "bwrap"

  validation {
    condition     = contains(["bwrap", "none"], var.agent_sandbox)
    error_message = "agent_sandbox is bwrap or none."
  }
}

variable "job_cpu" {
  description = "CPUs of one agent execution (AGENTFLEET_JOB_CPU)."
  type        = string
  default     = "2"
}

variable "job_memory" {
  description = "Memory of one agent execution (AGENTFLEET_JOB_MEMORY)."
  type        = string
  default     = "4Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.job_memory))
    error_message = "job_memory is like 4Gi or 512Mi."
  }
}

variable "job_timeout_s" {
  description = "Cloud Run task timeout of one agent execution (AGENTFLEET_JOB_TIMEOUT_S)."
  type        = number
  default     = 3900

  validation {
    condition     = var.job_timeout_s >= 60 && var.job_timeout_s <= 86400
    error_message = "job_timeout_s is between 60 and 86400."
  }
}

variable "job_max_retries" {
  description = "Cloud Run's own retries of an agent execution (AGENTFLEET_JOB_MAX_RETRIES); the reaper retries too."
  type        = number
  default     = 0

  validation {
    condition     = var.job_max_retries >= 0 && var.job_max_retries <= 10
    error_message = "job_max_retries is between 0 and 10."
  }
}

variable "reasoning_effort" {
  description = "AGENTFLEET_REASONING_EFFORT: gpt-oss reasoning effort (low, medium, high)."
  type        = string
  default     = "high"
}

variable "pubsub_topic" {
  description = "Dispatch topic name (AGENTFLEET_PUBSUB_TOPIC); null: <deployment_name>-tasks."
  type        = string
  default     = null
}

variable "firestore_database" {
  description = "Firestore database id (AGENTFLEET_FIRESTORE_DATABASE)."
  type        = string
  default     = "(default)"
}

variable "firestore_location" {
  description = "Firestore location; null: the region."
  type        = string
  default     = null
}

variable "firestore_delete_protection" {
  description = "Protect the Firestore database from deletion (destroy then abandons it)."
  type        = bool
  default     = true
}

variable "tasks_collection" {
  description = "Firestore collection of tasks (AGENTFLEET_TASKS_COLLECTION)."
  type        = string
  default     = "tasks"
}

variable "configure_dead_letter" {
  description = "Attach the dead-letter topic to the dispatch trigger's Eventarc subscription with gcloud (needs gcloud where terraform runs)."
  type        = bool
  default     = true
}

variable "force_destroy_bucket" {
  description = "Let `terraform destroy` delete the bucket with its objects."
  type        = bool
  default     = false
}
