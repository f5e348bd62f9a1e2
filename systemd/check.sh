#!/usr/bin/env bash
# check.sh checks systemd/edgecam.service with systemd's own analyser, offline (no systemd
# as PID 1 needed): `systemd-analyze verify` must be silent, and the exposure level of
# `systemd-analyze security --offline=true` at most MAX_EXPOSURE (default 2.5). It prints
# the figure. `make systemd-check` runs it; so does `make test`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
unit=${1:-$here/edgecam.service}
max=${MAX_EXPOSURE:-2.5}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-check: systemd-analyze is missing: install the systemd package (scripts/install-deps.sh does)" >&2
  exit 1
fi

# verify wants ExecStart's program to exist: point it at any executable (this shell), in a
# copy, so that the check does not need the package installed.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -E "s#^ExecStart=[^ ]+#ExecStart=$BASH#" "$unit" > "$tmp/edgecam.service"
if ! out=$(systemd-analyze verify --man=no "$tmp/edgecam.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd-check: systemd-analyze verify $unit:" >&2
  echo "$out" >&2
  exit 1
fi
echo "systemd-check: systemd-analyze verify: clean"

sec=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
line=$(grep -o 'Overall exposure level for [^:]*: [0-9.]*' <<<"$sec" || true)
if [ -z "$line" ]; then
  echo "systemd-check: no exposure level in systemd-analyze security's output:" >&2
  echo "$sec" >&2
  exit 1
fi
level=${line##* }
echo "systemd-check: exposure $level (at most $max)"
if ! awk -v l="$level" -v m="$max" 'BEGIN { exit !(l <= m) }'; then
  echo "systemd-check: exposure $level is above $max; what counts against it:" >&2
  grep '✗' <<<"$sec" >&2 || true
  exit 1
fi
