#!/usr/bin/env bash
# Builds the release binaries the container images ship, with the same cargo
# command line as Dockerfile.api and Dockerfile.worker (scripts/check-containers.sh
# fails if they drift apart), then checks that each binary exists and runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "build-release: cargo build (release) of jobs-api, jobs-cli, jobs-worker"
cargo build --release --locked -p jobs-api -p jobs-cli -p jobs-worker

# Ask cargo where the binaries went, so CARGO_TARGET_DIR and .cargo/config are honoured.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [[ -z "$target_dir" ]]; then
    echo "build-release: could not find the target directory" >&2
    exit 1
fi

for bin in jobs-api jobs jobs-worker; do
    path="$target_dir/release/$bin"
    if [[ ! -x "$path" ]]; then
        echo "build-release: FAIL: $path is missing" >&2
        exit 1
    fi
    if ! "$path" --help >/dev/null; then
        echo "build-release: FAIL: $bin --help did not succeed" >&2
        exit 1
    fi
    echo "build-release: ok: $bin runs ($path)"
done
echo "build-release: all three release binaries built and run"
