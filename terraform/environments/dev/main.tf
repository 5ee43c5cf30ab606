# One AgentFleet deployment: the control plane (three Cloud Functions over Firestore and Pub/Sub),
# the agent jobs' settings, the gpt-oss GPU service, the bucket, secrets, IAM and monitoring.
# The agent's Cloud Run jobs are not here: the dispatcher creates one per workspace at run time.

locals {
  labels         = { "agentfleet-deployment" = var.deployment_name }
  topic_name     = coalesce(var.pubsub_topic, "${var.deployment_name}-tasks")
  registry       = module.artifact_registry.url
  firestore_zone = coalesce(var.firestore_location, var.region)
  # Secret Manager references, never values. A job cannot start with a secret that has no
  # version: the git token is given to the jobs only once scripts/deploy.sh has added one.
  job_secret_refs = {
    LLM_API_KEY          = "projects/${var.project_id}/secrets/${module.secrets.ids["llm-api-key"]}/versions/latest"
    AGENTFLEET_GIT_TOKEN = "projects/${var.project_id}/secrets/${module.secrets.ids["git-token"]}/versions/latest"
  }
  job_secrets = { for name, ref in local.job_secret_refs : name => ref if var.use_git_token || name != "AGENTFLEET_GIT_TOKEN" }

  # AgentFleet's own MCP servers that can run as shared services (the mcp image runs serve.sh MODULE
  # ARGS), under the names the agent knows them by (settings.BUILTIN_MCP_SERVERS): a URL given under
  # such a name replaces the server the agent would start over stdio. The code assistant (code) is
  # not among them: it reads the task's checkout, which exists only inside the agent's job, so it
  # stays a stdio server there (terraform/modules/mcp/README.md).
  mcp_catalog = {
    media = {
      module      = "genmedia"
      what        = "images, diagrams, charts and speech (Vertex AI), stored in the bucket"
      args        = ["--prefix", local.shared_media_prefix]
      gcp_backend = true
      account     = "mcp_media"
      memory      = "1Gi"
      timeout_s   = 300
    }
    computer = {
      module      = "computer"
      what        = "a headless Chromium that checks web pages (loopback and --allow-host hosts only)"
      args        = ["--no-artifacts"]
      gcp_backend = false
      account     = "mcp"
      memory      = "2Gi"
      timeout_s   = 300
    }
    a2a = {
      module      = "a2a_bridge"
      what        = "the A2A bridge to other agents (--agent NAME=URL, --allowed-url)"
      args        = []
      gcp_backend = false
      account     = "mcp"
      memory      = "512Mi"
      timeout_s   = 3600
    }
  }
  deploy_mcp   = var.deploy_mcp && var.mcp_image != ""
  mcp_services = { for name, spec in local.mcp_catalog : name => spec if local.deploy_mcp && contains(var.mcp_servers_deployed, name) }
  # A shared server has no task id: what it stores goes under tasks/ (expired with the tasks'
  # artifacts) in a folder no task id can name (task ids are hex).
  shared_media_prefix = "tasks/shared/media"
  # What the gcp backend's ArtifactStore and Vertex AI need (the genmedia server reads Settings).
  mcp_gcp_env = {
    AGENTFLEET_BACKEND = "gcp"
    PROJECT_ID         = var.project_id
    REGION             = var.region
    GCS_BUCKET         = module.storage.name
  }

  # Google's MCP Toolbox for Databases, from Google's image: its tools.yaml (made by
  # `python -m agentfleet.mcp_servers.toolbox --print-config`, no credential in it) is a secret
  # mounted as a file; the user name and password it refers to are secrets in its environment.
  deploy_toolbox      = var.deploy_toolbox && var.toolbox_image != ""
  toolbox_secrets     = ["toolbox-config", "toolbox-db-user", "toolbox-db-password"]
  toolbox_config_path = "/secrets/tools.yaml"

  # AGENTFLEET_MCP_SERVERS for the functions and the agent jobs, and the services the agent may invoke.
  mcp_servers       = merge({ for name, m in module.mcp : name => m.url }, { for m in module.toolbox : "db" => m.url })
  mcp_service_names = merge({ for name, m in module.mcp : name => m.name }, { for m in module.toolbox : "db" => m.name })
}

module "project_services" {
  source     = "../../modules/project-services"
  project_id = var.project_id
  # Vertex AI only for the media service (genmedia's pictures and speech).
  services = concat(contains(keys(local.mcp_services), "media") ? ["aiplatform.googleapis.com"] : [], [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

module "artifact_registry" {
  source        = "../../modules/artifact-registry"
  project_id    = var.project_id
  region        = var.region
  repository_id = var.deployment_name
  labels        = local.labels
  depends_on    = [module.project_services]
}

module "storage" {
  source        = "../../modules/storage"
  project_id    = var.project_id
  name          = var.bucket_name
  location      = var.region
  force_destroy = var.force_destroy_bucket
  labels        = local.labels
  depends_on    = [module.project_services]
}

module "firestore" {
  source           = "../../modules/firestore"
  project_id       = var.project_id
  database_id      = var.firestore_database
  location         = local.firestore_zone
  tasks_collection = var.tasks_collection
  # The code's own declaration of its indexes, read as it is.
  indexes_file      = "${path.module}/../../../src/agentfleet/gcp/firestore_indexes.json"
  delete_protection = var.firestore_delete_protection
  depends_on        = [module.project_services]
}

module "pubsub" {
  source     = "../../modules/pubsub"
  project_id = var.project_id
  topic_name = local.topic_name
  labels     = local.labels
  depends_on = [module.project_services]
}

# Applied first on its own (scripts/deploy.sh: terraform apply -target=module.secrets), then the
# values are added as versions with gcloud: they never enter the state.
module "secrets" {
  source          = "../../modules/secrets"
  project_id      = var.project_id
  region          = var.region
  deployment_name = var.deployment_name
  secret_names    = concat(["llm-api-key", "git-token"], local.deploy_toolbox ? local.toolbox_secrets : [])
  labels          = local.labels
  depends_on      = [module.project_services]
}

module "service_accounts" {
  source          = "../../modules/service-accounts"
  project_id      = var.project_id
  deployment_name = var.deployment_name
  depends_on      = [module.project_services]
}

module "gpt_oss" {
  source          = "../../modules/gpt-oss"
  project_id      = var.project_id
  region          = var.region
  name            = "${var.deployment_name}-gpt-oss"
  image           = var.gpt_oss_image
  model           = var.gpt_oss_model
  model_dir       = element(split("/", var.gpt_oss_model), length(split("/", var.gpt_oss_model)) - 1)
  bucket          = module.storage.name
  service_account = module.service_accounts.emails.gpt_oss
  api_key_secret  = module.secrets.ids["llm-api-key"]
  max_instances   = var.gpt_oss_max_instances
  max_concurrency = var.gpt_oss_max_concurrency
  labels          = local.labels
}

# One private service per shared server (deploy_mcp, mcp_servers_deployed), each with its own
# arguments; only the agent's service account may invoke them (module.iam).
module "mcp" {
  for_each = local.mcp_services
  source   = "../../modules/mcp"

  project_id        = var.project_id
  region            = var.region
  name              = "${var.deployment_name}-mcp-${each.key}"
  description       = each.value.what
  image             = var.mcp_image
  args              = concat([each.value.module], each.value.args, lookup(var.mcp_server_args, each.key, []))
  env               = each.value.gcp_backend ? local.mcp_gcp_env : {}
  service_account   = module.service_accounts.emails[each.value.account]
  memory            = each.value.memory
  request_timeout_s = each.value.timeout_s
  labels            = local.labels
}

module "toolbox" {
  count  = local.deploy_toolbox ? 1 : 0
  source = "../../modules/mcp"

  project_id  = var.project_id
  region      = var.region
  name        = "${var.deployment_name}-mcp-db"
  description = "Google's MCP Toolbox for Databases over the database its tools.yaml names"
  image       = var.toolbox_image
  args        = ["--config=${local.toolbox_config_path}", "--address=0.0.0.0", "--port=8080", "--disable-version-check", "--logging-format=JSON"]
  host_flag   = "--allowed-hosts"
  secret_file = { path = local.toolbox_config_path, secret = module.secrets.ids["toolbox-config"] }
  secret_env = {
    AGENTFLEET_TOOLBOX_DB_USER     = module.secrets.ids["toolbox-db-user"]
    AGENTFLEET_TOOLBOX_DB_PASSWORD = module.secrets.ids["toolbox-db-password"]
  }
  service_account = module.service_accounts.emails.toolbox
  memory          = "512Mi"
  labels          = local.labels
}

module "functions" {
  source          = "../../modules/functions"
  project_id      = var.project_id
  region          = var.region
  deployment_name = var.deployment_name
  labels          = local.labels

  source_zip               = var.functions_source_zip
  build_service_account_id = module.service_accounts.ids.build
  docker_repository        = module.artifact_registry.id
  service_accounts         = module.service_accounts.emails

  bucket             = module.storage.name
  topic_id           = module.pubsub.topic_id
  topic_name         = module.pubsub.topic_name
  firestore_database = module.firestore.database_id
  tasks_collection   = var.tasks_collection
  gpt_oss_url        = module.gpt_oss.openai_base_url
  model              = var.gpt_oss_model
  reasoning_effort   = var.reasoning_effort
  mcp_servers        = local.mcp_servers

  job = {
    image           = var.agent_image
    service_account = module.service_accounts.emails.agent
    cpu             = var.job_cpu
    memory          = var.job_memory
    timeout_s       = var.job_timeout_s
    max_retries     = var.job_max_retries
    sandbox         = var.agent_sandbox
    secrets         = local.job_secrets
  }

  dead_letter = {
    configure            = var.configure_dead_letter
    topic_id             = module.pubsub.dead_letter_topic_id
    pubsub_service_agent = module.iam.pubsub_service_agent
  }
}

module "iam" {
  source               = "../../modules/iam"
  project_id           = var.project_id
  region               = var.region
  deployment_name      = var.deployment_name
  service_accounts     = module.service_accounts.emails
  service_account_ids  = module.service_accounts.ids
  bucket               = module.storage.name
  repository_id        = module.artifact_registry.repository_id
  topic_id             = module.pubsub.topic_id
  dead_letter_topic_id = module.pubsub.dead_letter_topic_id
  secret_ids           = module.secrets.ids
  invokers             = var.invokers
  services = {
    orchestrate = module.functions.services.orchestrate
    dispatch    = module.functions.services.dispatch
    reap        = module.functions.services.reap
    gpt_oss     = module.gpt_oss.name
    mcp         = local.mcp_service_names
  }
}

module "monitoring" {
  source                   = "../../modules/monitoring"
  project_id               = var.project_id
  region                   = var.region
  deployment_name          = var.deployment_name
  function_services        = module.functions.services
  gpt_oss_service          = module.gpt_oss.name
  dead_letter_subscription = module.pubsub.dead_letter_subscription
  alert_email              = var.alert_email
  labels                   = local.labels
}
