#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/gallery, pytest -m browser).
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (apt-get); never downloads a
# browser build of its own (Playwright drives this system Chromium; never run `playwright install`).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_browser: /usr/bin/chromium is missing and installing it needs root: sudo $0" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium
/usr/bin/chromium --version
