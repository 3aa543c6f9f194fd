#!/usr/bin/env bash
# Installs what offload's builds and tests need on a fresh Debian machine of
# the project's kind, idempotently and non-interactively (as root, or through
# sudo). Fast when everything is already present: apt is only touched when a
# package is missing.
#
# To add a Debian package, add a "package:command" entry to PACKAGES below
# (the command is how we tell it is already there; use "package:" to check the
# package itself with dpkg instead).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

log() { printf 'setup: %s\n' "$*" >&2; }

PACKAGES=(
  # Independent Kafka client for integration tests and by hand.
  "kcat:kcat"
  # Java and Maven come with this machine kind; listed so a bare Debian works.
  "default-jre-headless:java"
  "maven:mvn"
  # Writes the loader tests' encrypted private keys as users do.
  "openssl:openssl"
  # Drives `offload demo`'s dashboard in a real terminal in the tests.
  "tmux:tmux"
  # A real Prometheus server (and promtool) for the metrics integration test
  # and the alert rules check; run by scripts/prometheus.sh, not as a service.
  "prometheus:prometheus"
  # A real PostgreSQL 15 server for the postgres sink's tests and the SQL it
  # shares with the redshift sink; run by scripts/postgres.sh, not as a service.
  "postgresql-15:"
)

present() { # package:command
  local pkg=${1%%:*} cmd=${1#*:}
  if [[ -n "$cmd" ]]; then
    command -v "$cmd" >/dev/null 2>&1
  else
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]]
  fi
}

missing=()
for entry in "${PACKAGES[@]}"; do
  if present "$entry"; then
    log "${entry%%:*}: present"
  else
    missing+=("${entry%%:*}")
  fi
done

if ((${#missing[@]})); then
  if ((EUID == 0)); then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    log "error: need root (or sudo) to install: ${missing[*]}"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  "${SUDO[@]}" apt-get update -q >&2
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  # The prometheus package enables (and, under systemd, starts) a system-wide
  # server on :9090; offload only runs its own (scripts/prometheus.sh).
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    log "disabling the Debian prometheus service"
    if [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now prometheus.service >&2
    else
      "${SUDO[@]}" systemctl disable prometheus.service >&2
    fi
  fi
  # Likewise the package's own cluster on :5432: offload's tests start theirs.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then
    log "disabling the Debian postgresql service"
    if [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now postgresql.service >&2
    else
      "${SUDO[@]}" systemctl disable postgresql.service >&2 || true
      "${SUDO[@]}" pg_ctlcluster 15 main stop >&2 2>/dev/null || true
    fi
  fi
fi

# Kafka broker jars for integration tests (cached; no-op when present).
log "Kafka jars: $(bash "$SCRIPT_DIR/kafka-broker.sh" fetch)"

# fakesnow, the independent Snowflake emulator of the loader's tests, in a
# virtual environment (cached; no-op when present).
log "fakesnow: $(bash "$SCRIPT_DIR/fakesnow.sh" install)"

log "done"
