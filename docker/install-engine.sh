#!/usr/bin/env bash
# Install and start a Docker Engine of GitHub's runners' generation on a Debian host: dockerd >= 28 (its
# built-in BuildKit is >= 0.20, the first to speak the Actions cache v2) and buildx >= 0.21, with the
# containerd image store.
#
# Why Debian testing (forky): it is the only Debian suite with docker.io 28 / docker-buildx 0.29 /
# containerd 2.1, and those packages run on Debian 12 with Debian 12's libc. The forky source is pinned at
# priority 100 and each engine package is named with /forky, so nothing else on the host moves. runc stays
# bookworm's (forky's wants a newer libc); never `-t forky`, which would start a partial libc upgrade.
#
# What it does with the engine it finds:
#   - none: install from forky (or from the host's own suite on forky and later) and start it;
#   - one meeting the minimum: leave it alone (start it when it is installed but not running);
#   - the Docker 26.1 from trixie that this script installed before: stop it and upgrade it in place
#     (images, build cache and the base image survive);
#   - anything else: stop with one line naming the versions found and needed.
set -euo pipefail

MIN_DOCKERD=28.0   # BuildKit >= 0.20 ships in dockerd >= 28 (Debian's build reports BuildKit v0.0.0+unknown)
MIN_BUILDX=0.21    # the first buildx to read ACTIONS_CACHE_SERVICE_V2 / ACTIONS_RESULTS_URL
DAEMON_JSON=/etc/docker/daemon.json
LOG=${MODELBAKE_DOCKERD_LOG:-/var/log/modelbake-dockerd.log}
OLD_SOURCE=/etc/apt/sources.list.d/modelbake-trixie.sources
OLD_PIN=/etc/apt/preferences.d/modelbake-trixie
SOURCE=/etc/apt/sources.list.d/modelbake-forky.sources
PIN=/etc/apt/preferences.d/modelbake-forky

log() { printf 'install-engine: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# "28.5.2+dfsg4" / "v0.29.1-desktop.1" -> "28.5" / "0.29": the part the minimums are stated in.
major_minor() { sed -E 's/^[^0-9]*([0-9]+)\.([0-9]+).*/\1.\2/' <<<"$1"; }
at_least() {  # at_least FOUND MIN: version comparison on major.minor
  [ -n "$1" ] && dpkg --compare-versions "$(major_minor "$1")" ge "$2"
}

close_inherited_fds() {
  local fd
  for fd in "/proc/$BASHPID/fd"/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
  done
}
# Processes by name from /proc: minimal Debian 12 images and containers have no procps (pgrep, pkill), and a
# missing pgrep must not read as "not running". A zombie (exited, not yet reaped) is not running.
pids_of() {
  local dir stat
  for dir in /proc/[0-9]*; do
    [ "$(cat "$dir/comm" 2>/dev/null)" = "$1" ] || continue
    stat=$(cat "$dir/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    [ "${stat%% *}" = Z ] || echo "${dir#/proc/}"
  done
  return 0
}
stop_all() {  # SIGTERM (a clean shutdown keeps images and cache), then wait up to 30 s
  local pids
  pids=$(pids_of "$1")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086 # one pid per word
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 30); do [ -n "$(pids_of "$1")" ] || return 0; sleep 1; done
}
running_dockerd() { docker version --format '{{.Server.Version}}' 2>/dev/null || true; }
installed_dockerd() {
  command -v dockerd >/dev/null 2>&1 || return 0
  dockerd --version 2>/dev/null | sed -E 's/^Docker version ([^,]+),.*/\1/'
}
installed_buildx() { docker buildx version 2>/dev/null | awk '{print $2}' || true; }
uses_containerd_store() {
  docker info --format '{{.DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter'
}

meets_minimum() { at_least "$1" "$MIN_DOCKERD" && at_least "$2" "$MIN_BUILDX"; }

# The engine an earlier version of this script installed: Debian 13's docker.io 26.1, from our trixie source.
ours_from_trixie() {
  [ -f "$OLD_SOURCE" ] && dpkg-query -W -f '${Version}' docker.io 2>/dev/null | grep -q '^26\.'
}

stop_engine() {
  log "stopping dockerd and containerd for the upgrade"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl stop docker.socket docker containerd 2>/dev/null || true
  fi
  stop_all dockerd
  stop_all containerd
  [ -z "$(pids_of dockerd)" ] || die "dockerd did not stop; stop it and run me again"
}

install_packages() {
  [ "$(id -u)" = 0 ] || die "must run as root to install dockerd >= $MIN_DOCKERD and buildx >= $MIN_BUILDX"
  . /etc/os-release
  [ "${ID:-}" = debian ] || die "this installer knows Debian only (found ${ID:-unknown}); install dockerd >= $MIN_DOCKERD and buildx >= $MIN_BUILDX yourself"
  export DEBIAN_FRONTEND=noninteractive
  case "${VERSION_CODENAME:-}" in
    bookworm | trixie)
      cat >"$SOURCE" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: forky
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
      cat >"$PIN" <<'PINFILE'
Package: *
Pin: release n=forky
Pin-Priority: 100
PINFILE
      rm -f "$OLD_SOURCE" "$OLD_PIN"
      apt-get update -qq
      # runc and iptables from the host's own suite; tini-static replaces tini as forky's docker.io asks.
      apt-get install -y -qq --no-install-recommends runc iptables \
        docker.io/forky docker-cli/forky docker-buildx/forky containerd/forky >/dev/null
      ;;
    *)  # forky itself, or a later Debian: its own packages are new enough
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends runc iptables containerd docker.io docker-cli docker-buildx >/dev/null
      ;;
  esac
}

start_engine() {
  mkdir -p /etc/docker
  if [ ! -f "$DAEMON_JSON" ] || ! grep -q containerd-snapshotter "$DAEMON_JSON"; then
    echo '{"features":{"containerd-snapshotter":true}}' >"$DAEMON_JSON"
  fi
  if [ -z "$(pids_of dockerd)" ]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
      systemctl restart docker
    else
      log "starting dockerd in the background (log: $LOG)"
      # The daemon outlives this script, so it must not inherit the caller's other descriptors: a held
      # `flock` (the engine stays locked forever) or a pipe (`... | tee` never sees EOF).
      (close_inherited_fds; exec setsid nohup dockerd </dev/null >>"$LOG" 2>&1) &
    fi
  fi
  for _ in $(seq 1 90); do
    if [ -n "$(running_dockerd)" ] && [ -n "$(installed_buildx)" ]; then return 0; fi
    sleep 1
  done
  die "dockerd did not answer within 90 s; see $LOG"
}

# 1. What is there?
found_dockerd=$(running_dockerd)
running=1
if [ -z "$found_dockerd" ]; then
  running=0
  found_dockerd=$(installed_dockerd)
fi
found_buildx=$(installed_buildx)

if [ -n "$found_dockerd" ] && meets_minimum "$found_dockerd" "$found_buildx"; then
  if [ "$running" = 1 ]; then
    log "engine already running (dockerd $found_dockerd, buildx $found_buildx), nothing to do"
  else
    start_engine
  fi
elif [ -z "$found_dockerd" ]; then
  log "no Docker engine found: installing dockerd >= $MIN_DOCKERD and buildx >= $MIN_BUILDX"
  install_packages
  start_engine
elif ours_from_trixie; then
  log "upgrading the engine this script installed before (dockerd $found_dockerd, buildx ${found_buildx:-none})"
  [ "$running" = 0 ] || stop_engine
  install_packages
  start_engine
else
  die "found dockerd ${found_dockerd} and buildx ${found_buildx:-none}; need dockerd >= $MIN_DOCKERD and buildx >= $MIN_BUILDX (upgrade them, or remove them and run me again)"
fi

uses_containerd_store ||
  log "warning: the engine does not use the containerd image store; cache export needs it (set features.containerd-snapshotter in $DAEMON_JSON and restart dockerd)"
log "engine ready: dockerd $(running_dockerd), buildx $(installed_buildx), $(docker info --format 'driver={{.Driver}}')"
