# shellcheck shell=bash
# Sourced by the scripts that install Python tools into a private venv.

# Creates a venv at $1. Debian ships Python's venv support in a package of its
# own (python3-venv): when the first try fails, install it (with sudo unless
# root) and try again.
make_venv() {
  local dir="$1"
  python3 -m venv "$dir" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "python3 -m venv failed: install Python's venv module" >&2
    return 1
  fi
  local sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  echo "python3 -m venv failed: installing Debian's python3-venv"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  # The failed try leaves a venv without pip behind.
  rm -rf "$dir"
  python3 -m venv "$dir"
}
