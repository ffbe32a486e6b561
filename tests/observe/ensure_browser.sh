#!/usr/bin/env bash
# Make sure a real headless browser and its WebDriver are on PATH for the dashboard test
# (tests/observe/test_dashboard.py): Debian's chromium and chromium-driver. Nothing is
# downloaded from anywhere but Debian's package archive.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "ensure_browser.sh: chromium/chromium-driver are missing and installing them needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
