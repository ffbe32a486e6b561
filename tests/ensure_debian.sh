#!/usr/bin/env bash
# Make sure the given commands are on PATH, installing Debian packages when any is missing:
#     tests/ensure_debian.sh COMMAND... -- PACKAGE...
# The tests need real programs (redis-server, prometheus/promtool, chromium/chromedriver);
# on a fresh machine (CI, a new developer box) they come from Debian's archive, nothing else.
# A package's own service is never started here (policy-rc.d forbids it during the
# install): the tests run their own instances on free loopback ports.
set -euo pipefail
commands=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do commands+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
packages=("$@")
if [ "${#commands[@]}" -eq 0 ] || [ "${#packages[@]}" -eq 0 ]; then
    echo "usage: ensure_debian.sh COMMAND... -- PACKAGE..." >&2
    exit 2
fi
have_all() {
    for c in "${commands[@]}"; do command -v "$c" >/dev/null 2>&1 || return 1; done
}
have_all && exit 0
if [ "$(id -u)" != "0" ]; then
    echo "ensure_debian.sh: ${commands[*]} missing and installing ${packages[*]} needs root" >&2
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
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
have_all
