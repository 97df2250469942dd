#!/usr/bin/env bash
# Install Debian's Chromium for the tests that render `vpa-fleet report`'s HTML page headless
# (tests/integration/test_report.py takes a screenshot and checks the charts' pixels).
#
# Usage: testbed/install-chromium.sh        (as root, or with sudo available)
#
# Idempotent: when `chromium` is already on PATH it only says so. Otherwise it runs
# `apt-get update` and `apt-get install -y --no-install-recommends chromium`. The tests start it
# with --headless --no-sandbox and the background-networking switches off, from a fresh profile.
set -euo pipefail

log() { printf 'install-chromium: %s\n' "$*"; }

if command -v chromium >/dev/null 2>&1; then
    log "already installed: $(chromium --version 2>/dev/null || echo chromium)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    log "ERROR: chromium is missing and installing it needs root: run 'apt-get install chromium'"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "ERROR: no apt-get here: install Chromium by other means, as 'chromium' on PATH"
    exit 1
fi

log "installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { log "ERROR: chromium not on PATH after the install"; exit 1; }
log "installed: $(chromium --version 2>/dev/null || echo chromium)"
