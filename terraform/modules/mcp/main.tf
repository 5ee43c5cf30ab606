# One shared MCP server (streamable HTTP) as a private Cloud Run service: AgentFleet's own servers
# from the mcp image (serve.sh NAME ARGS), or Google's database toolbox from Google's image. Like the
# model service: reachable at its run.app URL, callable only by the agent's service account (the
# iam module's binding on each name this module outputs).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # The deterministic run.app host (the one Cloud Run shows first), known before the service exists,
  # so that a server that checks Host (the toolbox's --allowed-hosts) can be told its own name.
  host = "${var.name}-${data.google_project.this.number}.${var.region}.run.app"
  args = var.host_flag == "" ? var.args : concat(var.args, ["${var.host_flag}=${local.host}"])
}

resource "google_cloud_run_v2_service" "mcp" {
  project              = var.project_id
  location             = var.region
  name                 = var.name
  description          = "AgentFleet shared MCP server: ${var.description}"
  labels               = var.labels
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = false
  deletion_protection  = false

  template {
    labels                           = var.labels
    service_account                  = var.service_account
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = var.max_concurrency
    timeout                          = "${var.request_timeout_s}s"
    # An MCP session lives in one instance's memory (the computer server's page, for one): keep a
    # client's requests on the instance that holds its session.
    session_affinity = true

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    dynamic "volumes" {
      for_each = var.secret_file == null ? [] : [var.secret_file]
      content {
        name = "secret-file"
        secret {
          secret = volumes.value.secret
          items {
            version = "latest"
            path    = basename(volumes.value.path)
          }
        }
      }
    }

    containers {
      image = var.image
      args  = local.args

      ports {
        container_port = 8080
      }

      dynamic "env" {
        for_each = var.env
        content {
          name  = env.key
          value = env.value
        }
      }

      # Secret Manager references, never values: the latest version, read when an instance starts.
      dynamic "env" {
        for_each = var.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      dynamic "volume_mounts" {
        for_each = var.secret_file == null ? [] : [var.secret_file]
        content {
          name       = "secret-file"
          mount_path = dirname(volume_mounts.value.path)
        }
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
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
