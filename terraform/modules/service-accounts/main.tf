locals {
  # One identity per component; what each may do is granted in the iam module.
  accounts = {
    orchestrate      = { suffix = "api", what = "the orchestrate function (HTTP API)" }
    dispatch         = { suffix = "dispatch", what = "the dispatch function (launches agent jobs)" }
    dispatch_trigger = { suffix = "trigger", what = "the Eventarc trigger that invokes dispatch" }
    reap             = { suffix = "reap", what = "the reap function (requeues or fails stuck tasks)" }
    scheduler        = { suffix = "sched", what = "Cloud Scheduler calling reap with an OIDC token" }
    agent            = { suffix = "agent", what = "the agent Cloud Run jobs" }
    gpt_oss          = { suffix = "gptoss", what = "the gpt-oss model service" }
    mcp              = { suffix = "mcp", what = "the shared MCP services that need nothing of the project (computer, a2a)" }
    mcp_media        = { suffix = "mcpmedia", what = "the shared media MCP service (Vertex AI, writes to the bucket)" }
    toolbox          = { suffix = "toolbox", what = "the shared database toolbox MCP service (reads its own secrets)" }
    build            = { suffix = "build", what = "Cloud Build building the functions" }
  }
}

resource "google_service_account" "this" {
  for_each = local.accounts

  project      = var.project_id
  account_id   = "${var.deployment_name}-${each.value.suffix}"
  display_name = "${var.deployment_name} ${replace(each.key, "_", " ")}"
  description  = "AgentFleet: ${each.value.what}"
}
