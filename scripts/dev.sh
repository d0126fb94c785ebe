#!/usr/bin/env bash
# Runs the whole system in one process for a first look: makes sure a Redis
# answers at REDIS_URL (starting one if not), then `jobs-api --dev`, which
# serves gRPC on :50051 and REST on :5000 and runs workers in-process.
# Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/redis.sh

ensure_redis_running
exec cargo run --release --locked --bin jobs-api -- --dev "$@"
