# shellcheck shell=bash
# Podman behind the Docker API, set up the way docker-compose needs it on a machine with
# no Docker engine and no systemd. Source it, then call podman_ready:
#   . compose/podman.sh && podman_ready && docker-compose up --build
# It installs podman, debootstrap and docker-compose with apt-get when missing, writes a
# containers.conf (ulimits root may grant without CAP_SYS_RESOURCE; netavark for
# service-name DNS; runc, as crun refuses a hybrid cgroup tree), starts `podman system
# service` on a socket and a loop that runs the
# containers' healthchecks (podman schedules them with systemd timers, absent here, so
# `depends_on: condition: service_healthy` would never release). Both run detached, once
# per state directory, and exports DOCKER_HOST and CONTAINERS_CONF.
JOULIE_PODMAN_DIR=${JOULIE_PODMAN_DIR:-${XDG_RUNTIME_DIR:-/tmp}/joulie-podman}

podman_ready() {
  local d=$JOULIE_PODMAN_DIR sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v docker-compose >/dev/null; then
    echo "podman: installing podman, debootstrap and docker-compose" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq podman debootstrap docker-compose >/dev/null
  fi
  mkdir -p "$d"
  printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]' \
    '[network]' 'network_backend = "netavark"' '[engine]' 'runtime = "runc"' > "$d/containers.conf"
  export CONTAINERS_CONF=$d/containers.conf
  export DOCKER_HOST=unix://$d/podman.sock
  if ! curl -sf --unix-socket "$d/podman.sock" http://d/_ping >/dev/null 2>&1; then
    rm -f "$d/podman.sock"
    setsid podman system service --time=0 "unix://$d/podman.sock" \
      </dev/null >"$d/service.log" 2>&1 &
    echo $! > "$d/service.pid"
    local i
    for i in $(seq 100); do
      curl -sf --unix-socket "$d/podman.sock" http://d/_ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  if ! { [ -f "$d/health.pid" ] && kill -0 "$(cat "$d/health.pid")" 2>/dev/null; }; then
    setsid bash -c 'while :; do
        for c in $(podman ps -q --filter health=starting --filter health=healthy \
                     --filter health=unhealthy 2>/dev/null); do
          podman healthcheck run "$c" >/dev/null 2>&1 || true
        done
        sleep 2
      done' </dev/null >/dev/null 2>&1 &
    echo $! > "$d/health.pid"
  fi
}

podman_stop() {
  local d=$JOULIE_PODMAN_DIR p
  for p in health service; do
    [ -f "$d/$p.pid" ] && kill "$(cat "$d/$p.pid")" 2>/dev/null || true
    rm -f "$d/$p.pid"
  done
}
