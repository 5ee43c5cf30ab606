#!/usr/bin/env bash
# Deploy AgentFleet to a Google Cloud project: images, functions source, Terraform, secrets.
#
#   PROJECT_ID=my-project REGION=us-central1 GCS_BUCKET=my-bucket LLM_API_KEY=... scripts/deploy.sh
#   scripts/deploy.sh --dry-run      # print the commands, run none (no gcloud, terraform or credentials needed)
#
# Required: PROJECT_ID, REGION, GCS_BUCKET (the bucket Terraform creates for tasks' artifacts),
# LLM_API_KEY (the key the agent sends to the model endpoint; it goes into Secret Manager from
# stdin and never into Terraform state or a command line).
# Optional: DEPLOYMENT_NAME (agentfleet), IMAGE_TAG (the git commit, short), AGENTFLEET_GIT_TOKEN
# (a token for private repositories; stored as the git-token secret's new version),
# AGENT_SANDBOX (bwrap | none), GPT_OSS_MODEL, INVOKERS (comma-separated IAM members allowed to
# call the API, e.g. user:me@example.com), ALERT_EMAIL, FUNCTIONS_ZIP (an already staged zip:
# skips staging), TF_DIR (terraform/environments/dev), TF_BOOTSTRAP_TARGETS (what exists before
# the images are pushed: "module.secrets module.artifact_registry"), TFVARS_FILE
# (where the Terraform variables are written: build/deploy.tfvars.json), TF_STATE_BUCKET
# (Terraform's state bucket, default PROJECT_ID-DEPLOYMENT_NAME-tfstate, created if missing;
# prefix DEPLOYMENT_NAME).
# Shared MCP services (each a private Cloud Run service only the agent may call): MCP_SERVERS
# (comma-separated, of media, computer, a2a: from the mcp image), TOOLBOX_CONFIG (a tools.yaml made
# with `python -m agentfleet.mcp_servers.toolbox --print-config`: deploys the database toolbox as
# db) with TOOLBOX_DB_USER and TOOLBOX_DB_PASSWORD (the database credentials tools.yaml refers
# to; stored as secret versions from stdin, escaped as the toolbox reads them).
#
# Order: enable the APIs the build needs -> the state bucket -> stage the functions zip -> terraform init ->
# terraform apply of the secrets and the registry -> secret versions (gcloud) -> images (Cloud
# Build) -> terraform apply -> the API's URL and a curl to try it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "error: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

declare -A HOWTO=(
  [PROJECT_ID]="export PROJECT_ID=my-project           # the Google Cloud project to deploy into"
  [REGION]="export REGION=us-central1                 # a region with Cloud Run GPUs (see gpt_oss/README.md)"
  [GCS_BUCKET]="export GCS_BUCKET=my-project-agentfleet  # a globally unique bucket name; Terraform creates it"
  [LLM_API_KEY]="read -rs LLM_API_KEY && export LLM_API_KEY  # the model endpoint's key (typed, not echoed)"
)
missing=()
for name in PROJECT_ID REGION GCS_BUCKET LLM_API_KEY; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: missing ${missing[*]}. Set:" >&2
  for name in "${missing[@]}"; do echo "  ${HOWTO[$name]}" >&2; done
  exit 1
fi

DEPLOYMENT_NAME="${DEPLOYMENT_NAME:-agentfleet}"
AGENT_SANDBOX="${AGENT_SANDBOX:-bwrap}"
case "$AGENT_SANDBOX" in bwrap | none) ;; *) echo "error: AGENT_SANDBOX must be bwrap or none" >&2; exit 1 ;; esac
TF_DIR="${TF_DIR:-$ROOT/terraform/environments/dev}"
MCP_SERVERS="${MCP_SERVERS:-}"
for server in ${MCP_SERVERS//,/ }; do
  case "$server" in
    media | computer | a2a) ;;
    *) echo "error: MCP_SERVERS: $server is not media, computer or a2a (code runs inside the agent's job; db is TOOLBOX_CONFIG)" >&2; exit 1 ;;
  esac
done
TOOLBOX_CONFIG="${TOOLBOX_CONFIG:-}"
if [ -n "$TOOLBOX_CONFIG" ]; then
  [ "$DRY_RUN" = 1 ] || [ -f "$TOOLBOX_CONFIG" ] || { echo "error: TOOLBOX_CONFIG $TOOLBOX_CONFIG not found" >&2; exit 1; }
  for name in TOOLBOX_DB_USER TOOLBOX_DB_PASSWORD; do
    [ -n "${!name:-}" ] || { echo "error: TOOLBOX_CONFIG is set but $name is not (the credentials its tools.yaml refers to)" >&2; exit 1; }
  done
fi
TF_BOOTSTRAP_TARGETS="${TF_BOOTSTRAP_TARGETS:-module.secrets module.artifact_registry}"
if [ -z "${IMAGE_TAG:-}" ]; then
  IMAGE_TAG="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
  [ -n "$IMAGE_TAG" ] || { echo "error: set IMAGE_TAG (no git commit to name the images after)" >&2; exit 1; }
  if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then IMAGE_TAG="$IMAGE_TAG-dirty"; fi
fi
REGISTRY="$REGION-docker.pkg.dev/$PROJECT_ID/$DEPLOYMENT_NAME"
STAGE_DIR="$ROOT/build/functions"
FUNCTIONS_ZIP="${FUNCTIONS_ZIP:-}"
STAGE=1
if [ -n "$FUNCTIONS_ZIP" ]; then STAGE=0; else FUNCTIONS_ZIP="$STAGE_DIR.zip"; fi
TFVARS="${TFVARS_FILE:-$ROOT/build/deploy.tfvars.json}"
TF_STATE_BUCKET="${TF_STATE_BUCKET:-$PROJECT_ID-$DEPLOYMENT_NAME-tfstate}"

step() { echo; echo "== $*"; }
# Print a command (shell-quoted), then run it unless this is a dry run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  [ "$DRY_RUN" = 1 ] || "$@"
}
# A secret's new version from an environment variable, through stdin (never on a command line).
add_secret_version() {
  local secret="$1" var="$2"
  printf '+ printf %%s "$%s" | gcloud secrets versions add %q --project %q --data-file=-\n' "$var" "$secret" "$PROJECT_ID"
  [ "$DRY_RUN" = 1 ] || printf %s "${!var}" | gcloud secrets versions add "$secret" --project "$PROJECT_ID" --data-file=-
}

# A database credential's new version, escaped as the toolbox needs it: it pastes the value into
# tools.yaml's JSON text (agentfleet.mcp_servers.toolbox_config._substitutable does the same).
add_toolbox_credential() {
  local secret="$1" var="$2"
  printf '+ <$%s, escaped for tools.yaml> | gcloud secrets versions add %q --project %q --data-file=-\n' "$var" "$secret" "$PROJECT_ID"
  [ "$DRY_RUN" = 1 ] || python3 -c 'import json, os, sys; sys.stdout.write(json.dumps(os.environ[sys.argv[1]])[1:-1].replace("$", "\\u0024"))' "$var" \
    | gcloud secrets versions add "$secret" --project "$PROJECT_ID" --data-file=-
}

tfvars_json() {
  python3 - <<'PY'
import json, os, sys
env = os.environ
registry = env["REGISTRY"]
tag = env["IMAGE_TAG"]
values = {
    "project_id": env["PROJECT_ID"],
    "region": env["REGION"],
    "deployment_name": env["DEPLOYMENT_NAME"],
    "bucket_name": env["GCS_BUCKET"],
    "agent_image": f"{registry}/agent:{tag}",
    "gpt_oss_image": f"{registry}/gpt-oss:{tag}",
    "mcp_image": f"{registry}/mcp:{tag}",
    "functions_source_zip": env["FUNCTIONS_ZIP"],
    "agent_sandbox": env["AGENT_SANDBOX"],
}
servers = [s.strip() for s in env.get("MCP_SERVERS", "").split(",") if s.strip()]
values["deploy_mcp"] = bool(servers)
values["mcp_servers_deployed"] = servers
values["deploy_toolbox"] = bool(env.get("TOOLBOX_CONFIG"))
if env.get("GPT_OSS_MODEL"):
    values["gpt_oss_model"] = env["GPT_OSS_MODEL"]
if env.get("INVOKERS"):
    values["invokers"] = [m.strip() for m in env["INVOKERS"].split(",") if m.strip()]
if env.get("AGENTFLEET_GIT_TOKEN"):
    values["use_git_token"] = True
if env.get("ALERT_EMAIL"):
    values["alert_email"] = env["ALERT_EMAIL"]
print(json.dumps(values, indent=2))
PY
}
export REGISTRY IMAGE_TAG PROJECT_ID REGION DEPLOYMENT_NAME GCS_BUCKET FUNCTIONS_ZIP AGENT_SANDBOX MCP_SERVERS TOOLBOX_CONFIG

[ "$DRY_RUN" = 1 ] && echo "dry run: printing the commands; none is run"
echo "deploying $DEPLOYMENT_NAME to project $PROJECT_ID ($REGION), images $REGISTRY/*:$IMAGE_TAG"

step "APIs the build needs before Terraform runs"
run gcloud services enable cloudbuild.googleapis.com artifactregistry.googleapis.com \
  secretmanager.googleapis.com --project "$PROJECT_ID"

step "Terraform state bucket gs://$TF_STATE_BUCKET"
if [ "$DRY_RUN" = 1 ] || ! gcloud storage buckets describe "gs://$TF_STATE_BUCKET" --project "$PROJECT_ID" >/dev/null 2>&1; then
  run gcloud storage buckets create "gs://$TF_STATE_BUCKET" --project "$PROJECT_ID" --location "$REGION" \
    --uniform-bucket-level-access --public-access-prevention
fi

step "Cloud Functions source"
if [ "$STAGE" = 1 ]; then
  run "$ROOT/scripts/stage-functions.sh" "$STAGE_DIR"
else
  echo "using the staged $FUNCTIONS_ZIP"
  [ "$DRY_RUN" = 1 ] || [ -f "$FUNCTIONS_ZIP" ] || { echo "error: FUNCTIONS_ZIP $FUNCTIONS_ZIP not found" >&2; exit 1; }
fi

step "Terraform variables ($TFVARS)"
if [ "$DRY_RUN" = 1 ]; then tfvars_json; else mkdir -p "$(dirname "$TFVARS")"; tfvars_json >"$TFVARS"; cat "$TFVARS"; fi

step "Terraform: the secrets (without values) and the image registry"
init_args=(-input=false "-backend-config=bucket=$TF_STATE_BUCKET" "-backend-config=prefix=$DEPLOYMENT_NAME")
run terraform -chdir="$TF_DIR" init "${init_args[@]}"
targets=()
for target in $TF_BOOTSTRAP_TARGETS; do targets+=("-target=$target"); done
run terraform -chdir="$TF_DIR" apply -input=false -auto-approve -var-file="$TFVARS" "${targets[@]}"

step "Secret values (Secret Manager versions; never in Terraform state)"
add_secret_version "$DEPLOYMENT_NAME-llm-api-key" LLM_API_KEY
if [ -n "${AGENTFLEET_GIT_TOKEN:-}" ]; then
  add_secret_version "$DEPLOYMENT_NAME-git-token" AGENTFLEET_GIT_TOKEN
else
  echo "no AGENTFLEET_GIT_TOKEN: $DEPLOYMENT_NAME-git-token keeps the versions it has (public repositories need none)"
fi
if [ -n "$TOOLBOX_CONFIG" ]; then
  run gcloud secrets versions add "$DEPLOYMENT_NAME-toolbox-config" --project "$PROJECT_ID" "--data-file=$TOOLBOX_CONFIG"
  add_toolbox_credential "$DEPLOYMENT_NAME-toolbox-db-user" TOOLBOX_DB_USER
  add_toolbox_credential "$DEPLOYMENT_NAME-toolbox-db-password" TOOLBOX_DB_PASSWORD
fi

step "Images (Cloud Build): agent, gpt-oss, mcp"
run gcloud builds submit "$ROOT" --project "$PROJECT_ID" --region "$REGION" \
  --config "$ROOT/cloudbuild/images.yaml" \
  --substitutions "_REGISTRY=$REGISTRY,_TAG=$IMAGE_TAG"

step "Terraform: everything"
run terraform -chdir="$TF_DIR" apply -input=false -auto-approve -var-file="$TFVARS"

step "Deployed"
if [ "$DRY_RUN" = 1 ]; then
  run terraform -chdir="$TF_DIR" output -raw api_url
  API_URL='<api_url>'
else
  printf '+ terraform -chdir=%q output -raw api_url\n' "$TF_DIR"
  API_URL="$(terraform -chdir="$TF_DIR" output -raw api_url)"
fi
echo "API: $API_URL"
echo "Try it (the API admits the invokers' Google identities):"
echo "  curl -H \"Authorization: Bearer \$(gcloud auth print-identity-token)\" $API_URL/health"
