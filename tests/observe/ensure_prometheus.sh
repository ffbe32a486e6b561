#!/usr/bin/env bash
# Make sure Prometheus and promtool are on PATH for the alerting-rules unit tests and the
# end-to-end scrape test (tests/observe): Debian's prometheus package. The packaged service
# is never started here (policy-rc.d forbids it during the install); the tests run their own
# server on a free loopback port with its storage in a temporary directory.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "ensure_prometheus.sh: prometheus is missing and installing it needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null
