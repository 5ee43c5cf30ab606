terraform {
  required_version = ">= 1.5"

  # Remote state in a bucket of its own (not the deployment's bucket, which Terraform manages):
  #   terraform init -backend-config=bucket=STATE_BUCKET -backend-config=prefix=DEPLOYMENT_NAME
  # scripts/deploy.sh (TF_STATE_BUCKET) and cloudbuild/deploy.yaml (_TF_STATE_BUCKET) pass both.
  backend "gcs" {}

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 9.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  # Every resource that takes labels gets this one; modules add it explicitly too, for the
  # resources whose labels the provider does not merge (dashboards, alert policies).
  default_labels = local.labels
}
