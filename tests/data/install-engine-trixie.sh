#!/usr/bin/env bash
# tests/data/install-engine-trixie.sh: docker/install-engine.sh as it was before issue 11 (commit 94665e9),
# kept verbatim below this header so that tests/test_install_engine.py can build "a machine with the old
# engine" exactly as earlier checkouts of this repository left it: docker.io 26.1 / docker-buildx 0.13 from a
# pinned trixie source. Not used by anything else.
# Install and start a Docker Engine (>= 24) with buildx and the containerd image store on a Debian host.
#
# Why: Debian 12's own docker.io is 20.10 (no buildx, no cache export). Debian 13 ships docker.io 26.1 and
# docker-buildx 0.13, which run on Debian 12 with Debian 12's libc. The trixie source is pinned at priority
# 100 and each package is named with /trixie, so nothing else on the host moves (never `-t trixie`: that
# would pull trixie's containerd/runc and start a partial libc upgrade).
#
# Idempotent: does nothing where an engine with buildx already answers.
set -euo pipefail

DAEMON_JSON=/etc/docker/daemon.json
LOG=${MODELBAKE_DOCKERD_LOG:-/var/log/modelbake-dockerd.log}

log() { printf 'install-engine: %s\n' "$*" >&2; }

engine_ready() {
  docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1
}

if engine_ready; then
  log "engine already running ($(docker info --format '{{.ServerVersion}}')), nothing to do"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "must run as root to install and start dockerd"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! dpkg -s docker-buildx >/dev/null 2>&1; then
  . /etc/os-release
  if [ "${ID:-}" != debian ]; then
    log "this installer knows Debian only (found ${ID:-unknown}); install Docker Engine >= 24 with buildx yourself"
    exit 1
  fi
  if [ "${VERSION_CODENAME:-}" = trixie ] || [ "${VERSION_CODENAME:-}" = forky ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc tini iptables docker.io docker-cli docker-buildx
  else
    if [ ! -f /etc/apt/sources.list.d/modelbake-trixie.sources ]; then
      cat > /etc/apt/sources.list.d/modelbake-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
      cat > /etc/apt/preferences.d/modelbake-trixie <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      containerd runc tini iptables docker.io/trixie docker-cli/trixie docker-buildx/trixie
  fi
fi

mkdir -p /etc/docker
if [ ! -f "$DAEMON_JSON" ] || ! grep -q containerd-snapshotter "$DAEMON_JSON"; then
  echo '{"features":{"containerd-snapshotter":true}}' > "$DAEMON_JSON"
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl restart docker
  else
    log "starting dockerd in the background (log: $LOG)"
    nohup dockerd >"$LOG" 2>&1 &
  fi
fi

for _ in $(seq 1 60); do
  if engine_ready; then
    log "engine ready: $(docker info --format '{{.ServerVersion}} driver={{.Driver}}')"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see $LOG"
exit 1
