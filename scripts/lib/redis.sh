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

# True when a Redis answers PING at REDIS_URL (no redis-cli needed).
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
    [[ "$reply" == +PONG* ]]
  ) 2>/dev/null
}

# Installs Debian's redis-server if the binary is missing (tests start
# private servers with it).
ensure_redis_server_binary() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing: installing Debian's package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2
    return 1
  fi
}

# Starts a redis-server on REDIS_URL's port unless one answers already.
# When it starts one, REDIS_STARTED_PID holds its process id (it runs as a
# daemon, so it outlives the script unless the caller stops it); otherwise
# REDIS_STARTED_PID is empty.
ensure_redis_running() {
  REDIS_STARTED_PID=''
  redis_answers && return 0
  ensure_redis_server_binary
  local host port pidfile
  read -r host port < <(redis_host_port)
  pidfile="${TMPDIR:-/tmp}/jobs-redis-${port}.pid"
  echo "no Redis answers at ${host}:${port}: starting one"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
    --save '' --appendonly no --logfile "${TMPDIR:-/tmp}/jobs-redis-${port}.log" \
    --pidfile "$pidfile"
  for _ in $(seq 50); do
    if redis_answers; then
      REDIS_STARTED_PID="$(cat "$pidfile" 2>/dev/null || true)"
      return 0
    fi
    sleep 0.1
  done
  echo "redis-server did not come up on port ${port}" >&2
  return 1
}
