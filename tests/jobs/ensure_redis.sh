#!/usr/bin/env bash
# Make sure a real redis-server is on PATH for the Redis backend tests (tests/jobs).
# On a fresh machine (CI, a new developer box) it comes from Debian's packages; the tests
# start and stop their own instance on a free loopback port, so the packaged service is
# never started here (policy-rc.d forbids it during the install).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "ensure_redis.sh: redis-server is missing and installing it needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the package's own service from starting (and listening on 6379) during the install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null
