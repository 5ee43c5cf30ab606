terraform {
  required_version = ">= 1.5"

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
