locals {
  port       = 8080
  model_path = "/models/${var.model_dir}"
  # The image's entry point runs vLLM with the gpt-oss flags (--tool-call-parser openai
  # --enable-auto-tool-choice --reasoning-parser openai_gptoss); the service says which weights and
  # under what name the agent asks for them.
  args = concat(
    ["--model", local.model_path, "--served-model-name", var.model, "--port", tostring(local.port)],
    var.extra_args,
  )
}

resource "google_cloud_run_v2_service" "gpt_oss" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = "gpt-oss served by vLLM on one NVIDIA L4 (OpenAI-compatible API)"
  labels      = var.labels
  # Reachable at its run.app URL (the agent jobs have no VPC), callable only by the accounts granted
  # roles/run.invoker in the iam module: there is no public invoker.
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = false
  deletion_protection  = false

  template {
    labels                           = var.labels
    service_account                  = var.service_account
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = "${var.request_timeout_s}s"
    max_instance_request_concurrency = var.max_concurrency
    gpu_zonal_redundancy_disabled    = true

    node_selector {
      accelerator = "nvidia-l4"
    }

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    # The weights are read from the bucket's models/ folder through Cloud Storage FUSE, read-only.
    volumes {
      name = "models"
      gcs {
        bucket        = var.bucket
        read_only     = true
        mount_options = ["only-dir=${trim(var.models_prefix, "/")}", "implicit-dirs"]
      }
    }

    containers {
      name  = "vllm"
      image = var.image
      args  = local.args

      ports {
        container_port = local.port
      }

      resources {
        limits = {
          cpu              = "8"
          memory           = "32Gi"
          "nvidia.com/gpu" = "1"
        }
        # GPU instances are billed per instance: the CPU stays allocated, and the model stays loaded.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      env {
        name = "VLLM_API_KEY"
        value_source {
          secret_key_ref {
            secret  = var.api_key_secret
            version = "latest"
          }
        }
      }

      volume_mounts {
        name       = "models"
        mount_path = "/models"
      }

      # vLLM answers /health only once the model is loaded onto the GPU: a cold start waits up to
      # initial_delay + failure_threshold x period before Cloud Run gives up on the instance.
      startup_probe {
        initial_delay_seconds = var.startup_probe.initial_delay_s
        period_seconds        = var.startup_probe.period_s
        failure_threshold     = var.startup_probe.failure_threshold
        timeout_seconds       = 5
        http_get {
          path = "/health"
          port = local.port
        }
      }

      liveness_probe {
        period_seconds    = 30
        failure_threshold = 3
        timeout_seconds   = 5
        http_get {
          path = "/health"
          port = local.port
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }
}
