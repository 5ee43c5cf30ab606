# Every IAM grant of the deployment, in one file, each to one component's service account on the
# narrowest resource its code needs. terraform/iam_roles.json lists the same grants with the reason
# for each; tests/deploy/test_terraform_crosscheck.py checks that the two agree exactly.
# Only additive *_iam_member resources: nothing here can remove a binding someone else made.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  sa = { for k, email in var.service_accounts : k => "serviceAccount:${email}" }
  # Created by Google when the Pub/Sub API is enabled.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  role_prefix          = replace(var.deployment_name, "-", "_")
}

# --- custom roles (Cloud Run jobs are created per workspace at run time: no job to bind on) ---------

resource "google_project_iam_custom_role" "job_launcher" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_jobLauncher"
  title       = "AgentFleet job launcher"
  description = "Create, update and run the per-workspace agent jobs with overrides; read and cancel their executions."
  permissions = [
    "run.executions.cancel",
    "run.executions.get",
    "run.executions.list",
    "run.jobs.create",
    "run.jobs.get",
    "run.jobs.run",
    "run.jobs.runWithOverrides",
    "run.jobs.update",
    "run.operations.get",
  ]
}

resource "google_project_iam_custom_role" "api_executions" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_apiExecutions"
  title       = "AgentFleet API executions"
  description = "List and cancel agent executions; list jobs for the health check."
  permissions = [
    "run.executions.cancel",
    "run.executions.list",
    "run.jobs.list",
  ]
}

resource "google_project_iam_custom_role" "reaper_executions" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_reaperExecutions"
  title       = "AgentFleet reaper executions"
  description = "Cancel the execution of a task whose heartbeat went stale."
  permissions = [
    "run.executions.cancel",
  ]
}

# --- orchestrate ---------------------------------------------------------------------------

resource "google_project_iam_member" "orchestrate_datastore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.sa.orchestrate
}

resource "google_project_iam_member" "orchestrate_executions" {
  project = var.project_id
  role    = google_project_iam_custom_role.api_executions.id
  member  = local.sa.orchestrate
}

resource "google_pubsub_topic_iam_member" "orchestrate_publisher" {
  project = var.project_id
  topic   = var.topic_id
  role    = "roles/pubsub.publisher"
  member  = local.sa.orchestrate
}

resource "google_pubsub_topic_iam_member" "orchestrate_viewer" {
  project = var.project_id
  topic   = var.topic_id
  role    = "roles/pubsub.viewer"
  member  = local.sa.orchestrate
}

resource "google_storage_bucket_iam_member" "orchestrate_objects" {
  bucket = var.bucket
  role   = "roles/storage.objectUser"
  member = local.sa.orchestrate
}

resource "google_cloud_run_v2_service_iam_member" "orchestrate_invokers" {
  for_each = toset(var.invokers)

  project  = var.project_id
  location = var.region
  name     = var.services.orchestrate
  role     = "roles/run.invoker"
  member   = each.value
}

# --- dispatch ------------------------------------------------------------------------------

resource "google_project_iam_member" "dispatch_datastore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.sa.dispatch
}

resource "google_project_iam_member" "dispatch_job_launcher" {
  project = var.project_id
  role    = google_project_iam_custom_role.job_launcher.id
  member  = local.sa.dispatch
}

# Resource-level: dispatch may act as the agent account only, not as any account of the project.
resource "google_service_account_iam_member" "dispatch_acts_as_agent" {
  service_account_id = var.service_account_ids.agent
  role               = "roles/iam.serviceAccountUser"
  member             = local.sa.dispatch
}

resource "google_pubsub_topic_iam_member" "dispatch_publisher" {
  project = var.project_id
  topic   = var.topic_id
  role    = "roles/pubsub.publisher"
  member  = local.sa.dispatch
}

resource "google_cloud_run_v2_service_iam_member" "dispatch_trigger_invoker" {
  project  = var.project_id
  location = var.region
  name     = var.services.dispatch
  role     = "roles/run.invoker"
  member   = local.sa.dispatch_trigger
}

# --- reap ----------------------------------------------------------------------------------

resource "google_project_iam_member" "reap_datastore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.sa.reap
}

resource "google_project_iam_member" "reap_executions" {
  project = var.project_id
  role    = google_project_iam_custom_role.reaper_executions.id
  member  = local.sa.reap
}

resource "google_pubsub_topic_iam_member" "reap_publisher" {
  project = var.project_id
  topic   = var.topic_id
  role    = "roles/pubsub.publisher"
  member  = local.sa.reap
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_reap" {
  project  = var.project_id
  location = var.region
  name     = var.services.reap
  role     = "roles/run.invoker"
  member   = local.sa.scheduler
}

# --- agent jobs ----------------------------------------------------------------------------

resource "google_project_iam_member" "agent_datastore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.sa.agent
}

resource "google_storage_bucket_iam_member" "agent_objects" {
  bucket = var.bucket
  role   = "roles/storage.objectUser"
  member = local.sa.agent
}

resource "google_pubsub_topic_iam_member" "agent_publisher" {
  project = var.project_id
  topic   = var.topic_id
  role    = "roles/pubsub.publisher"
  member  = local.sa.agent
}

resource "google_secret_manager_secret_iam_member" "agent_llm_api_key" {
  project   = var.project_id
  secret_id = var.secret_ids["llm-api-key"]
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa.agent
}

resource "google_secret_manager_secret_iam_member" "agent_git_token" {
  project   = var.project_id
  secret_id = var.secret_ids["git-token"]
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa.agent
}

resource "google_cloud_run_v2_service_iam_member" "agent_invokes_gpt_oss" {
  project  = var.project_id
  location = var.region
  name     = var.services.gpt_oss
  role     = "roles/run.invoker"
  member   = local.sa.agent
}

# Every deployed shared MCP service, one binding each: the agent is the only one who may call them.
resource "google_cloud_run_v2_service_iam_member" "agent_invokes_mcp" {
  for_each = var.services.mcp

  project  = var.project_id
  location = var.region
  name     = each.value
  role     = "roles/run.invoker"
  member   = local.sa.agent
}

# --- shared MCP services -------------------------------------------------------------------------

# media (genmedia): pictures and speech from Vertex AI, written to the bucket under its own prefix
# only (create, never read, replace or delete). Granted only while the service is deployed.
resource "google_project_iam_member" "mcp_media_vertex" {
  count = contains(keys(var.services.mcp), "media") ? 1 : 0

  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = local.sa.mcp_media
}

resource "google_storage_bucket_iam_member" "mcp_media_objects" {
  count = contains(keys(var.services.mcp), "media") ? 1 : 0

  bucket = var.bucket
  role   = "roles/storage.objectCreator"
  member = local.sa.mcp_media
  condition {
    title       = "shared-media-only"
    description = "Only what the shared media server stores"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${var.bucket}/objects/tasks/shared/media/\")"
  }
}

# db (the toolbox): its tools.yaml and the database user and password, nothing else.
resource "google_secret_manager_secret_iam_member" "toolbox_config" {
  count = contains(keys(var.services.mcp), "db") ? 1 : 0

  project   = var.project_id
  secret_id = var.secret_ids["toolbox-config"]
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa.toolbox
}

resource "google_secret_manager_secret_iam_member" "toolbox_db_user" {
  count = contains(keys(var.services.mcp), "db") ? 1 : 0

  project   = var.project_id
  secret_id = var.secret_ids["toolbox-db-user"]
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa.toolbox
}

resource "google_secret_manager_secret_iam_member" "toolbox_db_password" {
  count = contains(keys(var.services.mcp), "db") ? 1 : 0

  project   = var.project_id
  secret_id = var.secret_ids["toolbox-db-password"]
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa.toolbox
}

# --- gpt-oss -------------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "gpt_oss_weights" {
  bucket = var.bucket
  role   = "roles/storage.objectViewer"
  member = local.sa.gpt_oss
}

resource "google_secret_manager_secret_iam_member" "gpt_oss_llm_api_key" {
  project   = var.project_id
  secret_id = var.secret_ids["llm-api-key"]
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa.gpt_oss
}

# --- builds and Pub/Sub ----------------------------------------------------------------------

# What a Cloud Functions build needs with its own service account, no more: the source archive
# (only objects under functions/), the repository the images go to, and its logs.
resource "google_storage_bucket_iam_member" "build_source" {
  bucket = var.bucket
  role   = "roles/storage.objectViewer"
  member = local.sa.build
  condition {
    title       = "functions-sources-only"
    description = "Only the functions' source archives"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${var.bucket}/objects/functions/\")"
  }
}

resource "google_artifact_registry_repository_iam_member" "build_images" {
  project    = var.project_id
  location   = var.region
  repository = var.repository_id
  role       = "roles/artifactregistry.writer"
  member     = local.sa.build
}

resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.sa.build
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  project = var.project_id
  topic   = var.dead_letter_topic_id
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}
