# shellcheck shell=bash
# Sourced by the scripts: make sure a redis-server exists, and that one answers.

# The host and port of REDIS_URL (redis://host:port[/db]); 127.0.0.1:6379 by default.
redis_host_port() {
  local url="${REDIS_URL:-redis://127.0.0.1:6379}"
  local rest="${url#*://}"
  rest="${rest##*@}"
  rest="${rest%%/*}"
  local host="${rest%%:*}" port="${rest##*:}"
  [ "$port" = "$rest" ] && port=6379
  echo "${host:-127.0.0.1} ${port}"
}

# True when a Redis answers PING at REDIS_URL (no redis-cli needed). One that
# wants a password answers -NOAUTH (or -NOPERM, or -ERR from an old server):
# it is there, and the tests report the authentication error themselves.
redis_answers() {
  local host port
  read -r host port < <(redis_host_port)
  # In a subshell: fd 3 closes when it ends, and the silenced stderr (bash's
  # "connection refused") stays inside it. A bare `exec 3<>… 2>/dev/null`
  # would silence stderr for the rest of the calling script.
  (
    reply=''
    exec 3<>"/dev/tcp/${host}/${port}" || exit 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    [[ "$reply" == +PONG* || "$reply" == -NOAUTH* || "$reply" == -NOPERM* || "$reply" == -ERR* ]]
  ) 2>/dev/null
}

# Installs Debian's redis-server if the binary is missing (tests start
# private servers with it), and fails unless it is Redis 7.0 or newer, which
# the servers need.
ensure_redis_server_binary() {
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "redis-server is missing: installing Debian's package"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
      # Under systemd the package starts a service on 6379; stop it, so the
      # server these scripts start (and stop) is the one that answers.
      if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now redis-server 2>/dev/null || true
      fi
    else
      echo "redis-server is missing: install Redis 7.0 or newer (Debian 12+/Ubuntu 24.04+: sudo apt-get install redis-server; macOS: brew install redis)" >&2
      return 1
    fi
  fi
  # `redis-server --version` prints "Redis server v=7.0.15 sha=…".
  local version
  version="$(redis-server --version 2>/dev/null || true)"
  version="${version#*v=}"
  version="${version%% *}"
  if ! [[ "${version%%.*}" =~ ^[0-9]+$ ]]; then
    echo "could not read redis-server's version; Jobs needs Redis 7.0 or newer" >&2
  elif [ "${version%%.*}" -lt 7 ]; then
    echo "redis-server ${version} ($(command -v redis-server)) is too old: Jobs needs Redis 7.0 or newer (Debian 12+ and Ubuntu 24.04+ ship it; older releases need it from redis.io or packages.redis.io)" >&2
    return 1
  fi
}

# Starts a redis-server on REDIS_URL's port unless one answers already. It
# starts one only for a local REDIS_URL (127.0.0.1 or localhost); a Redis
# elsewhere must be running already. When it starts one, REDIS_STARTED_PID
# holds its process id (it runs as a daemon, so it outlives the script unless
# the caller stops it); otherwise REDIS_STARTED_PID is empty.
# shellcheck disable=SC2034 # REDIS_STARTED_PID is read by the caller
ensure_redis_running() {
  REDIS_STARTED_PID=''
  redis_answers && return 0
  local host port pidfile logfile pid
  read -r host port < <(redis_host_port)
  case "$host" in
    127.0.0.1 | localhost) ;;
    *)
      echo "no Redis answers at ${host}:${port} (REDIS_URL): start that Redis, or point REDIS_URL at a local one" >&2
      return 1
      ;;
  esac
  ensure_redis_server_binary
  pidfile="${TMPDIR:-/tmp}/jobs-redis-${port}.pid"
  logfile="${TMPDIR:-/tmp}/jobs-redis-${port}.log"
  # A stale pidfile must not name the process stopped below.
  rm -f "$pidfile"
  echo "no Redis answers at ${host}:${port}: starting one"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
    --save '' --appendonly no --logfile "$logfile" --pidfile "$pidfile"
  for _ in $(seq 50); do
    if redis_answers; then
      REDIS_STARTED_PID="$(cat "$pidfile" 2>/dev/null || true)"
      return 0
    fi
    sleep 0.1
  done
  # It may be running without answering: stop it rather than leave it behind.
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
  fi
  echo "redis-server did not come up on port ${port} (its log: ${logfile})" >&2
  tail -n 5 "$logfile" >&2 2>/dev/null || true
  return 1
}
