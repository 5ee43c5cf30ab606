locals {
  # Key prefixes of src/agentfleet/names.py and the agent (tasks/<id>/patch.diff, tasks/<id>/events.jsonl,
  # inputs/<name>, snapshots/<workspace>.tar.gz), under AGENTFLEET_ARTIFACTS_PREFIX when one is set.
  key_prefix = var.artifacts_prefix == "" ? "" : "${trim(var.artifacts_prefix, "/")}/"
  expiring = {
    "tasks/"     = var.task_artifact_retention_days
    "inputs/"    = var.input_retention_days
    "snapshots/" = var.snapshot_retention_days
  }
}

# One bucket: task artifacts, input files, workspace snapshots, the model weights (models/, read by
# the gpt-oss service through a Cloud Storage volume) and the functions' source archives (functions/).
resource "google_storage_bucket" "this" {
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  # Snapshots are replaced in place with a generation precondition; keeping the replaced generation
  # for a few days lets a person restore a workspace a bad run overwrote.
  versioning {
    enabled = true
  }

  dynamic "lifecycle_rule" {
    for_each = local.expiring
    content {
      action {
        type = "Delete"
      }
      condition {
        age            = lifecycle_rule.value
        matches_prefix = ["${local.key_prefix}${lifecycle_rule.key}"]
      }
    }
  }

  # Old function source archives: a new deploy uploads a new one (its name carries its md5).
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = var.functions_source_retention_days
      matches_prefix = ["functions/"]
    }
  }

  # Replaced or deleted generations of any object.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
  }
}
