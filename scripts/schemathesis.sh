#!/usr/bin/env bash
# Property-based tests of the REST contract: builds jobs-api, starts it with
# in-process workers (--dev) on free ports against a private redis-server,
# and runs schemathesis against its /openapi.json with every check. Any
# failure fails the script. Extra arguments go to `schemathesis run`
# (e.g. --seed 1 to replay a run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/redis.sh
source scripts/lib/venv.sh

SCHEMATHESIS_VERSION=4.32.5
# Examples per operation and phase: enough to find contract breaks, small
# enough that a run takes a few minutes on a busy machine.
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"

venv="${XDG_CACHE_HOME:-$HOME/.cache}/jobs-ci/schemathesis-${SCHEMATHESIS_VERSION}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis ${SCHEMATHESIS_VERSION} into ${venv}"
  make_venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi

ensure_redis_server_binary
cargo build --locked --bin jobs-api

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
redis_port="$(free_port)"
http_port="$(free_port)"
grpc_port="$(free_port)"
workdir="$(mktemp -d)"
redis_pid=""
api_pid=""

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  for pid in "$api_pid" "$redis_pid"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$workdir"
}
trap cleanup EXIT

# A private Redis: the run writes jobs and data, and leaves nothing behind.
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$workdir" >"$workdir/redis.log" 2>&1 &
redis_pid=$!

REDIS_URL="redis://127.0.0.1:${redis_port}" \
  JOBS_KEY_PREFIX="schemathesis-$$" \
  JOBS_GRPC_ADDR="127.0.0.1:${grpc_port}" \
  JOBS_HTTP_ADDR="127.0.0.1:${http_port}" \
  JOBS_WORKER_CONCURRENCY=2 \
  RUST_LOG="${RUST_LOG:-warn}" \
  target/debug/jobs-api --dev >"$workdir/api.log" 2>&1 &
api_pid=$!

base="http://127.0.0.1:${http_port}"
for _ in $(seq 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${http_port}") 2>/dev/null; then break; fi
  if ! kill -0 "$api_pid" 2>/dev/null; then
    echo "jobs-api exited:" >&2
    cat "$workdir/api.log" >&2
    exit 1
  fi
  sleep 0.1
done

# Every check but one: DELETE /jobs/{jid} cancels a job and the job stays
# readable with its final status (the contract), so "a deleted resource is
# gone" (use_after_free) cannot hold for jobs; the only other DELETE clears
# the /data collection, which that check skips anyway. Rules the schema cannot
# state are in schemathesis.toml.
# Run from the scratch directory, so hypothesis's example database and
# schemathesis's cache go away with it instead of into the repository.
config="$PWD/scripts/schemathesis.toml"
status=0
(cd "$workdir" && "$venv/bin/schemathesis" --config-file "$config" \
  run "${base}/openapi.json" \
  --checks all \
  --exclude-checks use_after_free \
  --max-examples "$MAX_EXAMPLES" \
  --workers 1 \
  --seed "${SCHEMATHESIS_SEED:-0}" \
  --request-timeout 10 \
  --wait-for-schema 30 \
  "$@") || status=$?

if [ "$status" -ne 0 ]; then
  echo "== jobs-api log (last 50 lines)" >&2
  tail -n 50 "$workdir/api.log" >&2
fi
exit "$status"
