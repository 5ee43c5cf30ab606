locals {
  # The environment the three functions share (the dispatcher copies what the agent needs into each
  # job it creates). No secret is here: only the agent job gets LLM_API_KEY and the git token, as
  # Secret Manager references (AGENTFLEET_JOB_SECRETS), never their values.
  environment = {
    AGENTFLEET_BACKEND             = "gcp"
    PROJECT_ID                     = var.project_id
    REGION                         = var.region
    GCS_BUCKET                     = var.bucket
    GPT_OSS_URL                    = var.gpt_oss_url
    AGENTFLEET_MODEL               = var.model
    AGENTFLEET_MODEL_PROFILE       = var.model_profile
    AGENTFLEET_REASONING_EFFORT    = var.reasoning_effort
    AGENTFLEET_JOB_IMAGE           = var.job.image
    AGENTFLEET_JOB_SERVICE_ACCOUNT = var.job.service_account
    AGENTFLEET_JOB_CPU             = var.job.cpu
    AGENTFLEET_JOB_MEMORY          = var.job.memory
    AGENTFLEET_JOB_TIMEOUT_S       = tostring(var.job.timeout_s)
    AGENTFLEET_JOB_MAX_RETRIES     = tostring(var.job.max_retries)
    AGENTFLEET_JOB_SANDBOX         = var.job.sandbox
    AGENTFLEET_JOB_SECRETS         = jsonencode(var.job.secrets)
    AGENTFLEET_MCP_SERVERS         = jsonencode(var.mcp_servers)
    AGENTFLEET_PUBSUB_TOPIC        = var.topic_name
    AGENTFLEET_FIRESTORE_DATABASE  = var.firestore_database
    AGENTFLEET_TASKS_COLLECTION    = var.tasks_collection
  }

  source = {
    bucket = google_storage_bucket_object.source.bucket
    object = google_storage_bucket_object.source.name
  }
}

# The staged functions folder (scripts/stage-functions.sh), named by its md5: a new archive is a new
# object, which is what makes Cloud Functions rebuild.
resource "google_storage_bucket_object" "source" {
  bucket       = var.bucket
  name         = "functions/${filemd5(var.source_zip)}.zip"
  source       = var.source_zip
  content_type = "application/zip"
}

# --- orchestrate: the HTTP API ---------------------------------------------------------------

resource "google_cloudfunctions2_function" "orchestrate" {
  project     = var.project_id
  location    = var.region
  name        = "${var.deployment_name}-orchestrate"
  description = "AgentFleet HTTP API (functions/main.py orchestrate)"
  labels      = var.labels

  build_config {
    runtime               = var.runtime
    entry_point           = "orchestrate"
    environment_variables = var.build_environment
    service_account       = var.build_service_account_id
    docker_repository     = var.docker_repository
    source {
      storage_source {
        bucket = local.source.bucket
        object = local.source.object
      }
    }
  }

  service_config {
    min_instance_count               = 0
    max_instance_count               = var.orchestrate.max_instances
    max_instance_request_concurrency = var.orchestrate.concurrency
    available_cpu                    = var.orchestrate.cpu
    available_memory                 = var.orchestrate.memory
    timeout_seconds                  = var.orchestrate.timeout_s
    # Reachable from anywhere, callable only by var.invokers (roles/run.invoker, modules/iam).
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    service_account_email          = var.service_accounts.orchestrate
    environment_variables          = local.environment
  }
}

# --- dispatch: one Pub/Sub message → one agent execution -------------------------------------

resource "google_cloudfunctions2_function" "dispatch" {
  project     = var.project_id
  location    = var.region
  name        = "${var.deployment_name}-dispatch"
  description = "AgentFleet dispatcher (functions/main.py dispatch), triggered by the tasks topic"
  labels      = var.labels

  build_config {
    runtime               = var.runtime
    entry_point           = "dispatch"
    environment_variables = var.build_environment
    service_account       = var.build_service_account_id
    docker_repository     = var.docker_repository
    source {
      storage_source {
        bucket = local.source.bucket
        object = local.source.object
      }
    }
  }

  service_config {
    min_instance_count               = 0
    max_instance_count               = var.dispatch.max_instances
    max_instance_request_concurrency = var.dispatch.concurrency
    available_cpu                    = var.dispatch.cpu
    available_memory                 = var.dispatch.memory
    timeout_seconds                  = var.dispatch.timeout_s
    # Eventarc's push is internal traffic: nothing else needs to reach it.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = var.service_accounts.dispatch
    environment_variables          = local.environment
  }

  event_trigger {
    trigger_region = var.region
    event_type     = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic   = var.topic_id
    # A launch that fails for a reason a retry can fix raises (RetryableError): redeliver it.
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = var.service_accounts.dispatch_trigger
  }
}

# Eventarc creates and names the trigger's subscription itself, so its dead-letter policy (and the
# Pub/Sub service agent's subscriber grant on it) are set with gcloud once the trigger exists.
resource "terraform_data" "dispatch_dead_letter" {
  count = var.dead_letter.configure ? 1 : 0

  triggers_replace = [
    google_cloudfunctions2_function.dispatch.event_trigger[0].trigger,
    var.dead_letter.topic_id,
    var.dead_letter.max_delivery_attempts,
  ]

  provisioner "local-exec" {
    command = "bash ${path.module}/dead-letter.sh"
    environment = {
      PROJECT               = var.project_id
      REGION                = var.region
      TRIGGER               = google_cloudfunctions2_function.dispatch.event_trigger[0].trigger
      DEAD_LETTER_TOPIC     = var.dead_letter.topic_id
      MAX_DELIVERY_ATTEMPTS = tostring(var.dead_letter.max_delivery_attempts)
      PUBSUB_SERVICE_AGENT  = var.dead_letter.pubsub_service_agent
    }
  }
}

# --- reap: stuck tasks, called by Cloud Scheduler ---------------------------------------------

resource "google_cloudfunctions2_function" "reap" {
  project     = var.project_id
  location    = var.region
  name        = "${var.deployment_name}-reap"
  description = "AgentFleet reaper (functions/main.py reap), called by Cloud Scheduler"
  labels      = var.labels

  build_config {
    runtime               = var.runtime
    entry_point           = "reap"
    environment_variables = var.build_environment
    service_account       = var.build_service_account_id
    docker_repository     = var.docker_repository
    source {
      storage_source {
        bucket = local.source.bucket
        object = local.source.object
      }
    }
  }

  service_config {
    min_instance_count = 0
    # One pass at a time: two reapers racing would only contend on the same tasks.
    max_instance_count               = 1
    max_instance_request_concurrency = 1
    available_cpu                    = var.reap.cpu
    available_memory                 = var.reap.memory
    timeout_seconds                  = var.reap.timeout_s
    # Cloud Scheduler in the same project counts as internal traffic.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = var.service_accounts.reap
    environment_variables          = local.environment
  }
}

resource "google_cloud_scheduler_job" "reap" {
  project          = var.project_id
  region           = var.region
  name             = "${var.deployment_name}-reap"
  description      = "Runs the AgentFleet reaper: requeues or fails tasks whose heartbeat went stale"
  schedule         = var.reap_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${var.reap.timeout_s + 20}s"

  # The next tick is the retry.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.reap.service_config[0].uri
    oidc_token {
      service_account_email = var.service_accounts.scheduler
      audience              = google_cloudfunctions2_function.reap.service_config[0].uri
    }
  }
}
