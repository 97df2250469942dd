#!/usr/bin/env bash
# Install Prometheus and promtool from Debian's `prometheus` package for the testbed, without
# starting the package's system service.
#
# Usage: testbed/install-prometheus.sh        (as root, or with sudo available)
#
# Idempotent: when both `prometheus` and `promtool` are already on PATH (or in /usr/bin) it only
# says so. Otherwise it runs `apt-get update` and
# `apt-get install -y --no-install-recommends prometheus`.
#
# Why the care about services: the package's postinst runs
# `update-rc.d prometheus defaults` and `invoke-rc.d prometheus start` (plus the systemd unit
# when systemd is PID 1). That service listens on 0.0.0.0:9090. The testbed starts its own
# instances on 127.0.0.1 only, so during the install a policy-rc.d that denies every start is in
# place (an existing one that already denies is kept), the service is disabled afterwards, and
# the script fails if anything listens on port 9090 beyond loopback at the end.
set -euo pipefail

log() { printf 'install-prometheus: %s\n' "$*"; }

find_binary() {
    command -v "$1" 2>/dev/null || { [ -x "/usr/bin/$1" ] && echo "/usr/bin/$1"; } || true
}

# Listeners on port 9090 that are not loopback-only, one per line (empty when none).
exposed_9090() {
    if ! command -v ss >/dev/null 2>&1; then
        return 0
    fi
    ss -ltnH 2>/dev/null | awk '{print $4}' | grep -E ':9090$' \
        | grep -Ev '^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]):9090$' || true
}

check_not_exposed() {
    local exposed
    exposed="$(exposed_9090)"
    if [ -n "$exposed" ]; then
        log "ERROR: something listens on port 9090 beyond loopback: $exposed"
        log "stop it (e.g. 'service prometheus stop'); the testbed never needs it"
        exit 1
    fi
    log "checked: nothing listens on 0.0.0.0:9090 or [::]:9090"
}

prometheus_bin="$(find_binary prometheus)"
promtool_bin="$(find_binary promtool)"
if [ -n "$prometheus_bin" ] && [ -n "$promtool_bin" ]; then
    log "already installed: $prometheus_bin, $promtool_bin ($("$prometheus_bin" --version 2>&1 | head -n1))"
    log "nothing to do"
    exit 0
fi
missing=""
[ -n "$prometheus_bin" ] || missing="$missing prometheus"
[ -n "$promtool_bin" ] || missing="$missing promtool"
log "missing:$missing; installing the Debian package 'prometheus'"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        log "ERROR: needs root (or sudo) to install the Debian package 'prometheus'"
        exit 1
    fi
    SUDO="sudo"
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "ERROR: apt-get not found; install Prometheus >= 2.39 so that 'prometheus' and"
    log "'promtool' are on PATH"
    exit 1
fi

# Deny service starts while the package is configured. An existing policy-rc.d that already
# denies (exit 101, as in most container images) is left alone; any other is restored on exit.
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
policy_ours=0
restore_policy() {
    if [ "$policy_ours" -eq 1 ]; then
        $SUDO rm -f "$POLICY"
        if [ -n "$policy_backup" ]; then
            $SUDO mv "$policy_backup" "$POLICY"
            log "restored the previous $POLICY"
        else
            log "removed the temporary $POLICY"
        fi
    fi
}
trap restore_policy EXIT

policy_rc=0
if [ -x "$POLICY" ]; then
    "$POLICY" prometheus start >/dev/null 2>&1 || policy_rc=$?
fi
if [ "$policy_rc" -eq 101 ]; then
    log "$POLICY already denies service starts; keeping it"
else
    if [ -e "$POLICY" ]; then
        policy_backup="$($SUDO mktemp "${POLICY}.vpa-fleet.XXXXXX")"
        $SUDO cp -p "$POLICY" "$policy_backup"
    fi
    policy_ours=1
    printf '#!/bin/sh\n# temporary, from testbed/install-prometheus.sh: deny service starts\nexit 101\n' \
        | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 0755 "$POLICY"
    log "installed a temporary $POLICY that denies service starts"
fi

log "running: apt-get update"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
log "running: apt-get install -y --no-install-recommends prometheus"
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends prometheus

restore_policy
policy_ours=0

# Keep the package's service from starting at the next boot as well.
if [ -x /etc/init.d/prometheus ] && command -v update-rc.d >/dev/null 2>&1; then
    $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
    log "disabled the SysV service 'prometheus' (update-rc.d prometheus disable)"
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    log "disabled and stopped the systemd unit prometheus.service"
fi

prometheus_bin="$(find_binary prometheus)"
promtool_bin="$(find_binary promtool)"
if [ -z "$prometheus_bin" ] || [ -z "$promtool_bin" ]; then
    log "ERROR: the package installed but prometheus/promtool are still not found"
    exit 1
fi
log "installed: $prometheus_bin, $promtool_bin ($("$prometheus_bin" --version 2>&1 | head -n1))"
check_not_exposed
