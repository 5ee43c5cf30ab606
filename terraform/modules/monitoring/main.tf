locals {
  prefix = replace(var.deployment_name, "-", "_")

  # The functions log one JSON object per line on stderr (src/agentfleet/logs.py: severity, message,
  # logger, task_id); Cloud Run puts it in jsonPayload. Gen2 functions log as cloud_run_revision.
  function_logs = {
    for k, service in var.function_services : k => join(" AND ", [
      "resource.type=\"cloud_run_revision\"",
      "resource.labels.service_name=\"${service}\"",
    ])
  }

  metric = {
    dispatch_outcomes = "${local.prefix}_dispatch_outcomes"
    dispatch_latency  = "${local.prefix}_dispatch_latency"
    dispatch_retries  = "${local.prefix}_dispatch_retries"
    agent_errors      = "${local.prefix}_agent_errors"
    reaped_requeued   = "${local.prefix}_reaper_requeued"
    reaped_failed     = "${local.prefix}_reaper_failed"
  }
  metric_type = { for k, name in local.metric : k => "logging.googleapis.com/user/${name}" }

  # Eventarc names the dispatch trigger's subscription eventarc-REGION-<function>-NNN-sub-NNN.
  eventarc_subscription = "resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=monitoring.regex.full_match(\"eventarc-${var.region}-${var.function_services.dispatch}-.*\")"
  dead_letter_filter    = "resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${var.dead_letter_subscription}\""
  gpu_service           = "resource.type=\"cloud_run_revision\" AND resource.label.service_name=\"${var.gpt_oss_service}\""
  agent_jobs            = "resource.type=\"cloud_run_job\" AND resource.label.job_name=monitoring.regex.full_match(\"agent-.*\")"
}

# --- log-based metrics --------------------------------------------------------------------------

# api/pubsub.py logs "dispatch <task> attempt <n>: <outcome> <execution or detail>" for every message;
# the outcome is launched, duplicate, waiting, unknown or failed (service.DispatchOutcome).
resource "google_logging_metric" "dispatch_outcomes" {
  project     = var.project_id
  name        = local.metric.dispatch_outcomes
  description = "Dispatch outcomes by kind: launched, duplicate, waiting, unknown, failed (tasks reaching DISPATCHED, or why not)."
  filter = join(" AND ", [
    local.function_logs.dispatch,
    "jsonPayload.logger=\"agentfleet.dispatch\"",
    "jsonPayload.message=~\"^dispatch \\\\S+ attempt \\\\d+: \"",
  ])
  label_extractors = {
    outcome = "REGEXP_EXTRACT(jsonPayload.message, \"attempt \\\\d+: (\\\\w+)\")"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "AgentFleet dispatch outcomes"
    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "launched, duplicate, waiting, unknown or failed"
    }
  }
}

# Seconds from a task's publish to its dispatch: api/pubsub.py's dispatch line carries `queued_s`
# (now minus the message's publishTime) as a field of its own.
resource "google_logging_metric" "dispatch_latency" {
  project     = var.project_id
  name        = local.metric.dispatch_latency
  description = "Seconds from a task's publish on the topic to its dispatch (the launch decision), per delivery."
  filter = join(" AND ", [
    local.function_logs.dispatch,
    "jsonPayload.logger=\"agentfleet.dispatch\"",
    "jsonPayload.queued_s>=0",
  ])
  value_extractor = "EXTRACT(jsonPayload.queued_s)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "AgentFleet dispatch latency"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 0.01
    }
  }
}

# api/pubsub.py: "dispatch of message <id> will be retried: <why>" (the message is redelivered).
resource "google_logging_metric" "dispatch_retries" {
  project     = var.project_id
  name        = local.metric.dispatch_retries
  description = "Deliveries the dispatcher gave back for a retry (Cloud Run or the store unavailable)."
  filter = join(" AND ", [
    local.function_logs.dispatch,
    "jsonPayload.message=~\"^dispatch of message .* will be retried\"",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# Errors of the agent executions (agent/work.py "task failed unexpectedly", crashes, ...).
resource "google_logging_metric" "agent_errors" {
  project     = var.project_id
  name        = local.metric.agent_errors
  description = "ERROR log entries of the agent jobs (agent-<workspace>): failing attempts."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_job\"",
    "resource.labels.job_name=~\"^agent-\"",
    "severity>=ERROR",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# api/http.py logs "reaped: {'requeued': [...], 'failed': [...], 'rescheduled': [...]}" once per pass.
resource "google_logging_metric" "reaped_requeued" {
  project     = var.project_id
  name        = local.metric.reaped_requeued
  description = "Reaper passes that requeued a silent task (a stuck attempt retried)."
  filter = join(" AND ", [
    local.function_logs.reap,
    "jsonPayload.message=~\"^reaped: .*'requeued': \\\\['\"",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_logging_metric" "reaped_failed" {
  project     = var.project_id
  name        = local.metric.reaped_failed
  description = "Reaper passes that gave up on a silent task (FAILED after its last attempt)."
  filter = join(" AND ", [
    local.function_logs.reap,
    "jsonPayload.message=~\"^reaped: .*'failed': \\\\['\"",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# --- the dashboard --------------------------------------------------------------------------------

locals {
  chart = {
    for k, w in {
      dispatch_outcomes = {
        title = "Dispatch outcomes (tasks dispatched, and why not)"
        sets = [{
          filter  = "metric.type=\"${local.metric_type.dispatch_outcomes}\""
          aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = ["metric.label.outcome"], plot = "STACKED_BAR"
        }]
      }
      dispatch_latency = {
        title = "Dispatch latency, delivery to launch (p50, p95)"
        sets = [for p in ["50", "95"] : {
          filter  = "metric.type=\"${local.metric_type.dispatch_latency}\""
          aligner = "ALIGN_PERCENTILE_${p}", reducer = "REDUCE_MAX", group = [], plot = "LINE"
        }]
      }
      queue_wait = {
        title = "Oldest message waiting for dispatch (s)"
        sets = [{
          filter  = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.eventarc_subscription}"
          aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group = [], plot = "LINE"
        }]
      }
      job_executions = {
        title = "Agent job executions completed, by result"
        sets = [{
          filter  = "metric.type=\"run.googleapis.com/job/completed_execution_count\" AND ${local.agent_jobs}"
          aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.result"], plot = "STACKED_BAR"
        }]
      }
      job_failures = {
        title = "Agent job errors, dispatch failures, reaper give-ups"
        sets = [for m in ["agent_errors", "reaped_failed", "dispatch_retries"] : {
          filter  = "metric.type=\"${local.metric_type[m]}\""
          aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [], plot = "LINE"
        }]
      }
      gpu_instances = {
        title = "gpt-oss GPU instances"
        sets = [{
          filter  = "metric.type=\"run.googleapis.com/container/instance_count\" AND ${local.gpu_service}"
          aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group = ["metric.label.state"], plot = "STACKED_AREA"
        }]
      }
      gpu_requests = {
        title = "gpt-oss requests, by response class"
        sets = [{
          filter  = "metric.type=\"run.googleapis.com/request_count\" AND ${local.gpu_service}"
          aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = ["metric.label.response_code_class"], plot = "STACKED_BAR"
        }]
      }
      dead_letters = {
        title = "Dead-lettered dispatch messages"
        sets = [{
          filter  = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND ${local.dead_letter_filter}"
          aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group = [], plot = "LINE"
        }]
      }
      } : k => {
      title = w.title
      xyChart = {
        dataSets = [for s in w.sets : {
          plotType   = s.plot
          targetAxis = "Y1"
          timeSeriesQuery = {
            timeSeriesFilter = {
              filter = s.filter
              aggregation = {
                alignmentPeriod    = "60s"
                perSeriesAligner   = s.aligner
                crossSeriesReducer = s.reducer
                groupByFields      = s.group
              }
            }
          }
        }]
      }
    }
  }
  chart_order = ["dispatch_outcomes", "dispatch_latency", "queue_wait", "job_executions", "job_failures", "gpu_instances", "gpu_requests", "dead_letters"]
}

resource "google_monitoring_dashboard" "this" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "AgentFleet (${var.deployment_name})"
    labels      = var.labels
    mosaicLayout = {
      columns = 48
      tiles = [for i, k in local.chart_order : {
        xPos   = (i % 2) * 24
        yPos   = floor(i / 2) * 16
        width  = 24
        height = 16
        widget = local.chart[k]
      }]
    }
  })

  depends_on = [
    google_logging_metric.dispatch_outcomes,
    google_logging_metric.dispatch_latency,
    google_logging_metric.dispatch_retries,
    google_logging_metric.agent_errors,
    google_logging_metric.reaped_requeued,
    google_logging_metric.reaped_failed,
  ]
}

# --- alerting: failing or stuck tasks ----------------------------------------------------------------

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == "" ? 0 : 1

  project      = var.project_id
  display_name = "AgentFleet ${var.deployment_name} alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
  user_labels = var.labels
}

resource "google_monitoring_alert_policy" "tasks" {
  project      = var.project_id
  display_name = "AgentFleet ${var.deployment_name}: failing or stuck tasks"
  combiner     = "OR"
  user_labels  = var.labels

  notification_channels = google_monitoring_notification_channel.email[*].id

  documentation {
    mime_type = "text/markdown"
    content   = "Tasks of the AgentFleet deployment `${var.deployment_name}` are failing or stuck. Look at the dashboard \"AgentFleet (${var.deployment_name})\", the failed tasks (`GET /tasks?status=FAILED`), the agent jobs' logs (`resource.type=\"cloud_run_job\"`), and dead letters (`gcloud pubsub subscriptions pull ${var.dead_letter_subscription}`)."
  }

  conditions {
    display_name = "A launch failed (dispatch outcome 'failed')"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type.dispatch_outcomes}\" AND resource.type=\"cloud_run_revision\" AND metric.label.outcome=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "Agent executions log errors"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type.agent_errors}\" AND resource.type=\"cloud_run_job\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.agent_error_threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "The reaper gave up on a stuck task"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type.reaped_failed}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "Tasks wait for dispatch too long"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.eventarc_subscription}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.queue_wait_threshold_s
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_MAX"
      }
      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "Dispatch messages were dead-lettered"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND ${local.dead_letter_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [
    google_logging_metric.dispatch_outcomes,
    google_logging_metric.agent_errors,
    google_logging_metric.reaped_failed,
  ]
}
