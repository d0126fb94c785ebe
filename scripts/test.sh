#!/usr/bin/env bash
# Runs every test against a real Redis. Tests use REDIS_URL when it is set
# (each under its own key prefix) and otherwise start private redis-servers,
# so the only need is the redis-server binary, installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/redis.sh

ensure_redis_server_binary
exec cargo test --workspace --locked "$@"
