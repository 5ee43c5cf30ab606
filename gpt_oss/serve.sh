#!/bin/sh
# Serve gpt-oss from MODEL_PATH on $PORT with vLLM's OpenAI-compatible API (/v1/..., /health).
#
# Settings come from the environment (MODEL_PATH, SERVED_MODEL_NAME, PORT, HOST, MAX_MODEL_LEN,
# GPU_MEMORY_UTILIZATION) or from the container's args: --model, --served-model-name, --port,
# --host, --max-model-len and --gpu-memory-utilization given there win over the environment
# (`vllm serve` takes the model as its positional argument; its --model is deprecated, and an
# error in some releases). Other args are passed on to `vllm serve` as they are.
set -eu

MODEL_PATH="${MODEL_PATH:-/models/gpt-oss-20b}"
SERVED_MODEL_NAME="${SERVED_MODEL_NAME:-openai/gpt-oss-20b}"
PORT="${PORT:-8080}"
HOST="${HOST:-0.0.0.0}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-32768}"
GPU_MEMORY_UTILIZATION="${GPU_MEMORY_UTILIZATION:-0.90}"
# openai_harmony's tokenizer files, baked into the image (no download at start).
TIKTOKEN_ENCODINGS_BASE="${TIKTOKEN_ENCODINGS_BASE:-/opt/tiktoken}"
export TIKTOKEN_ENCODINGS_BASE

# Take the settings out of the args; keep the rest, in order (rotated through "$@").
count=$#
while [ "$count" -gt 0 ]; do
  arg="$1"
  shift
  count=$((count - 1))
  case "$arg" in
    --model | --served-model-name | --port | --host | --max-model-len | --gpu-memory-utilization)
      if [ "$count" -eq 0 ]; then echo "error: $arg needs a value" >&2; exit 2; fi
      value="$1"
      shift
      count=$((count - 1))
      ;;
    --model=* | --served-model-name=* | --port=* | --host=* | --max-model-len=* | --gpu-memory-utilization=*)
      value="${arg#*=}"
      arg="${arg%%=*}"
      ;;
    *)
      set -- "$@" "$arg"
      continue
      ;;
  esac
  case "$arg" in
    --model) MODEL_PATH="$value" ;;
    --served-model-name) SERVED_MODEL_NAME="$value" ;;
    --port) PORT="$value" ;;
    --host) HOST="$value" ;;
    --max-model-len) MAX_MODEL_LEN="$value" ;;
    --gpu-memory-utilization) GPU_MEMORY_UTILIZATION="$value" ;;
  esac
done

if [ ! -f "$MODEL_PATH/config.json" ]; then
  echo "error: no model at $MODEL_PATH ($MODEL_PATH/config.json is missing). Mount the bucket folder" \
    "holding the weights there (see gpt_oss/README.md), or set MODEL_PATH." >&2
  exit 1
fi
for name in o200k_base cl100k_base; do
  if [ ! -f "$TIKTOKEN_ENCODINGS_BASE/$name.tiktoken" ]; then
    echo "error: $TIKTOKEN_ENCODINGS_BASE/$name.tiktoken is missing (the image bakes it in)" >&2
    exit 1
  fi
done
if [ -z "${VLLM_API_KEY:-}" ]; then
  echo "warning: VLLM_API_KEY is not set: /v1 answers any caller that reaches the service" >&2
fi

# VLLM_API_KEY, when set, is read by vLLM itself (it guards every /v1 path; /health stays open).
exec vllm serve "$MODEL_PATH" \
  --served-model-name "$SERVED_MODEL_NAME" \
  --host "$HOST" \
  --port "$PORT" \
  --max-model-len "$MAX_MODEL_LEN" \
  --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION" \
  --enable-auto-tool-choice \
  --tool-call-parser openai \
  --reasoning-parser openai_gptoss \
  "$@"
