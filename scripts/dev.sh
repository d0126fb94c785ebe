#!/usr/bin/env bash
# Runs the whole system in one process for a first look: makes sure a Redis
# answers at REDIS_URL (starting one if not), then `jobs-api --dev`, which
# serves gRPC on :50051 and REST on :5000 and runs workers in-process.
# Ctrl-C stops it, and the Redis it started, if it started one (a Redis that
# was already answering is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/redis.sh

ensure_redis_running
if [ -z "$REDIS_STARTED_PID" ]; then
  exec cargo run --release --locked --bin jobs-api -- --dev "$@"
fi
# Not exec: the shell stays to stop the Redis once jobs-api has ended (Ctrl-C
# reaches jobs-api directly; the daemon, in a session of its own, does not
# see it).
trap 'kill "$REDIS_STARTED_PID" 2>/dev/null || true' EXIT
cargo run --release --locked --bin jobs-api -- --dev "$@"
