output "api_url" {
  description = "URL of the orchestrate function (the HTTP API)."
  value       = google_cloudfunctions2_function.orchestrate.service_config[0].uri
}

output "services" {
  description = "The Cloud Run service under each function (where roles/run.invoker is granted)."
  value = {
    orchestrate = google_cloudfunctions2_function.orchestrate.service_config[0].service
    dispatch    = google_cloudfunctions2_function.dispatch.service_config[0].service
    reap        = google_cloudfunctions2_function.reap.service_config[0].service
  }
}

output "function_names" {
  description = "The functions' names by entry point."
  value = {
    orchestrate = google_cloudfunctions2_function.orchestrate.name
    dispatch    = google_cloudfunctions2_function.dispatch.name
    reap        = google_cloudfunctions2_function.reap.name
  }
}

output "environment" {
  description = "The environment the functions run with."
  value       = local.environment
}
