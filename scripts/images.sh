#!/usr/bin/env bash
# Build the images the compose stack runs, on podman, with or without a registry.
#
#   bash scripts/images.sh            # the operator image joulie-tasks:local
#   bash scripts/images.sh --ci       # also the test stand-ins (Redis, control plane)
#
# Base image: $BASE_IMAGE when set (pulled if missing); else python:3.11-slim when it is
# here or can be pulled; else (no registry reachable) localhost/joulie-base:bookworm, built
# once from the Debian mirror apt already uses: debootstrap, the machine's extra CA
# certificates (a TLS-inspecting proxy's, if any), Python in a venv first on PATH.
# The stand-ins replace images no test here can pull: Redis from Debian's redis-server,
# and a control plane (etcd + kube-apiserver) from the KUBEBUILDER_ASSETS binaries.
# Sets up podman the way this machine needs it (compose/podman.sh); prints nothing on
# success but the image names and sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=0
[ "${1:-}" = "--ci" ] && ci=1
# shellcheck source=compose/podman.sh
. compose/podman.sh
podman_ready

LOCAL_BASE=localhost/joulie-base:bookworm
PUBLIC_BASE=docker.io/library/python:3.11-slim

build_local_base() {
  local root mirror
  root=$(mktemp -d)
  mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
    | grep -v security | head -1 || true)
  [ -n "$mirror" ] || mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "images: building $LOCAL_BASE from $mirror (debootstrap, ~2 min)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$root" "$mirror" >/dev/null
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  # Debian's Python refuses system-wide pip: every image installs into this venv.
  chroot "$root" python3 -m venv /opt/venv
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  : > "$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -c . | podman import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$LOCAL_BASE" >/dev/null
  rm -rf "$root"
}

pick_base() {
  if [ -n "${BASE_IMAGE:-}" ]; then
    podman image exists "$BASE_IMAGE" || podman pull -q "$BASE_IMAGE" >/dev/null
    echo "$BASE_IMAGE"; return
  fi
  if podman image exists "$PUBLIC_BASE"; then echo "$PUBLIC_BASE"; return; fi
  if podman image exists "$LOCAL_BASE"; then echo "$LOCAL_BASE"; return; fi
  if timeout 20 podman pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then echo "$PUBLIC_BASE"; return; fi
  build_local_base
  echo "$LOCAL_BASE"
}

base=$(pick_base)
podman build -q --network host --build-arg "BASE_IMAGE=$base" -t joulie-tasks:local -f Dockerfile . >/dev/null
built=(joulie-tasks:local)

if [ "$ci" = 1 ]; then
  # The stand-ins need a Debian base with apt (the local one, or the public slim image).
  podman build -q --network host --build-arg "BASE_IMAGE=$base" -t localhost/joulie-redis:local \
    -f compose/ci/redis.Containerfile compose/ci >/dev/null
  : "${KUBEBUILDER_ASSETS:?KUBEBUILDER_ASSETS must name the etcd and kube-apiserver binaries}"
  ctx=$(mktemp -d)
  cp "$KUBEBUILDER_ASSETS/etcd" "$KUBEBUILDER_ASSETS/kube-apiserver" "$ctx/"
  cp compose/ci/controlplane.sh compose/ci/bootstrap.py "$ctx/"
  podman build -q --network host --build-arg "BASE_IMAGE=$base" -t localhost/joulie-controlplane:local \
    -f compose/ci/controlplane.Containerfile "$ctx" >/dev/null
  rm -rf "$ctx"
  built+=(localhost/joulie-redis:local localhost/joulie-controlplane:local)
fi
for image in "${built[@]}"; do
  printf '%s %s MB (base %s)\n' "$image" \
    "$(( $(podman image inspect --format '{{.Size}}' "$image") / 1000000 ))" "$base"
done
