#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim-bookworm with debootstrap + `docker import`, for machines that
# reach no container registry. Idempotent: does nothing when TAG already exists (MODELBAKE_REBUILD_BASE=1 forces).
#
# Usage: docker/make-base-image.sh [TAG]     (default modelbake/python-base:3.11-bookworm)
set -euo pipefail

TAG=${1:-modelbake/python-base:3.11-bookworm}
SUITE=${MODELBAKE_BASE_SUITE:-bookworm}
MIRROR=${MODELBAKE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'make-base-image: %s\n' "$*" >&2; }

if [ "${MODELBAKE_REBUILD_BASE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG already exists, nothing to do"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

ROOTFS=$(mktemp -d /var/tmp/modelbake-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

log "debootstrap $SUITE into $ROOTFS (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null

# python:3.11-slim has `python` and `pip` on PATH; the Debian rootfs names them python3/pip3.
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
# Debian's pip refuses system installs (PEP 668); our Dockerfiles install into venvs or --target dirs anyway.
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

log "importing as $TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
log "done: $(docker image inspect --format '{{.Id}} {{.Size}}' "$TAG")"
