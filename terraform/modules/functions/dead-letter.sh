#!/usr/bin/env bash
# Attach the dead-letter topic to the subscription Eventarc made for the dispatch trigger, and let the
# Pub/Sub service agent acknowledge on it (it forwards a message only if it may). Idempotent.
# Called by terraform/modules/functions (terraform_data.dispatch_dead_letter) with:
#   PROJECT REGION TRIGGER DEAD_LETTER_TOPIC MAX_DELIVERY_ATTEMPTS PUBSUB_SERVICE_AGENT
set -euo pipefail

trigger="${TRIGGER##*/}"
subscription="$(gcloud eventarc triggers describe "$trigger" --project "$PROJECT" --location "$REGION" \
  --format 'value(transport.pubsub.subscription)')"
if [ -z "$subscription" ]; then
  echo "dead-letter.sh: the Eventarc trigger $trigger has no Pub/Sub subscription yet; apply again" >&2
  exit 1
fi

gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --project "$PROJECT" \
  --member "$PUBSUB_SERVICE_AGENT" --role roles/pubsub.subscriber --condition None >/dev/null
gcloud pubsub subscriptions update "$subscription" --project "$PROJECT" \
  --dead-letter-topic "$DEAD_LETTER_TOPIC" --max-delivery-attempts "$MAX_DELIVERY_ATTEMPTS" \
  --min-retry-delay 10s --max-retry-delay 600s
echo "dead-letter.sh: $subscription dead-letters to $DEAD_LETTER_TOPIC after $MAX_DELIVERY_ATTEMPTS attempts"
