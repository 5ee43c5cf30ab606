output "metric_types" {
  description = "The log-based metrics' types by key."
  value       = local.metric_type
}

output "dashboard_id" {
  description = "The dashboard's resource id."
  value       = google_monitoring_dashboard.this.id
}

output "alert_policy" {
  description = "The alert policy's resource name."
  value       = google_monitoring_alert_policy.tasks.name
}
