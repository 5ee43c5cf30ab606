variable "project_id" {
  description = "Project of the service."
  type        = string
}

variable "region" {
  description = "Region of the service: one with Cloud Run L4 GPUs (us-central1, europe-west1, europe-west4, asia-southeast1, ...)."
  type        = string
}

variable "name" {
  description = "Service name."
  type        = string
}

variable "image" {
  description = "The gpt-oss vLLM image (REGION-docker.pkg.dev/PROJECT/DEPLOYMENT/gpt-oss:TAG)."
  type        = string
}

variable "model" {
  description = "Name the model is served under (AGENTFLEET_MODEL; vLLM --served-model-name)."
  type        = string
  default     = "openai/gpt-oss-20b"
}

variable "model_dir" {
  description = "Folder of the weights under the models prefix of the bucket (mounted at /models)."
  type        = string
  default     = "gpt-oss-20b"
}

variable "extra_args" {
  description = "More vLLM arguments (e.g. [\"--max-model-len\", \"65536\"])."
  type        = list(string)
  default     = []
}

variable "bucket" {
  description = "Bucket holding the weights."
  type        = string
}

variable "models_prefix" {
  description = "Folder of the bucket mounted at /models (gcsfuse only-dir)."
  type        = string
  default     = "models/"
}

variable "service_account" {
  description = "Service account e-mail the service runs as."
  type        = string
}

variable "api_key_secret" {
  description = "Secret id of the API key vLLM requires (VLLM_API_KEY)."
  type        = string
}

variable "max_instances" {
  description = "Most GPU instances at once (each is one L4, billed while up)."
  type        = number
  default     = 1

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 10
    error_message = "max_instances is between 1 and 10 (mind the L4 quota)."
  }
}

variable "max_concurrency" {
  description = "Requests one instance takes at once: vLLM batches them on the GPU, so more than one pays off."
  type        = number
  default     = 32

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 1000
    error_message = "max_concurrency is between 1 and 1000."
  }
}

variable "request_timeout_s" {
  description = "Longest one request may take (a long streamed reply)."
  type        = number
  default     = 3600

  validation {
    condition     = var.request_timeout_s >= 60 && var.request_timeout_s <= 3600
    error_message = "request_timeout_s is between 60 and 3600."
  }
}

variable "startup_probe" {
  description = "How long a cold start may take to load the model: initial_delay_s + failure_threshold x period_s."
  type = object({
    initial_delay_s   = optional(number, 240)
    period_s          = optional(number, 10)
    failure_threshold = optional(number, 24)
  })
  default = {}

  validation {
    condition     = var.startup_probe.initial_delay_s <= 240 && var.startup_probe.period_s * var.startup_probe.failure_threshold <= 240
    error_message = "Cloud Run caps initial_delay_s at 240 and failure_threshold x period_s at 240."
  }
}

variable "labels" {
  description = "Labels of the service and its revisions."
  type        = map(string)
  default     = {}
}
