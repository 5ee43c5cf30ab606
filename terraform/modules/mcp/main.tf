# A shared MCP server (streamable HTTP) the agents may use, from the mcp image. Like the model
# service: reachable at its run.app URL, callable only by the agent's service account.
resource "google_cloud_run_v2_service" "mcp" {
  project              = var.project_id
  location             = var.region
  name                 = var.name
  description          = "AgentFleet shared MCP server"
  labels               = var.labels
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = false
  deletion_protection  = false

  template {
    labels                           = var.labels
    service_account                  = var.service_account
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = 20

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image
      args  = var.args

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        cpu_idle = true
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }
}
