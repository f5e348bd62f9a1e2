#!/usr/bin/env bash
# Runs every Go fuzz target of the module, one after another, each for FUZZTIME (default 1m).
#
#   scripts/fuzz.sh                 every FuzzXxx in every package
#   scripts/fuzz.sh ./localcloud/... a subset of packages
#   FUZZTIME=10s FUZZPARALLEL=1 scripts/fuzz.sh
#
# Targets are found with `go test -list '^Fuzz'`, so a new FuzzXxx is run without editing this
# script. A crash makes `go test` write the failing input under the package's
# testdata/fuzz/FuzzXxx/: commit it with the fix, and it runs as a regression test in every
# plain `go test` from then on. The script prints a summary table and exits non-zero when any
# target failed.
set -uo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-1m}
# Workers per target; the default (GOMAXPROCS) can be lowered on a shared machine.
FUZZPARALLEL=${FUZZPARALLEL:-}
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

# Packages that have fuzz targets: only files ending in _test.go can hold them.
mapfile -t candidates < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u)
declare -A wanted=()
for d in "${candidates[@]}"; do wanted["$d"]=1; done
mapfile -t listed < <($GO list -f '{{.Dir}}' "${pkgs[@]}")
root=$(pwd)

results=()
failed=0
total=0
for dir in "${listed[@]}"; do
	rel=./${dir#"$root"/}
	[ "$dir" = "$root" ] && rel=.
	[ -n "${wanted[$rel]:-}" ] || continue
	mapfile -t targets < <($GO test -list '^Fuzz' "$rel" 2>/dev/null | grep '^Fuzz')
	for t in "${targets[@]}"; do
		total=$((total + 1))
		echo "=== fuzz $rel $t for $FUZZTIME"
		args=(-run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME")
		[ -n "$FUZZPARALLEL" ] && args+=(-parallel "$FUZZPARALLEL")
		start=$(date +%s)
		log=$(mktemp)
		$GO test "${args[@]}" "$rel" 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		# Go's fuzzing engine sometimes ends a run on a loaded machine with "context deadline
		# exceeded" and no failing input (its worker missed the deadline): run that target again once.
		if [ "$rc" -ne 0 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
			echo "=== fuzz $rel $t: the fuzzing engine timed out without a failing input; running it again"
			$GO test "${args[@]}" "$rel" 2>&1 | tee "$log"
			rc=${PIPESTATUS[0]}
		fi
		secs=$(($(date +%s) - start))
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		if [ "$rc" -eq 0 ]; then
			status=ok
		else
			status=FAIL
			failed=$((failed + 1))
			crasher=$(grep -o 'testdata/fuzz/[^ ]*' "$log" | tail -1)
			[ -n "$crasher" ] && status="FAIL ($rel/$crasher)"
		fi
		rm -f "$log"
		results+=("$(printf '%-28s %-26s %10s %6ss  %s' "$rel" "$t" "${execs:-?}" "$secs" "$status")")
	done
done

echo
printf '%-28s %-26s %10s %7s  %s\n' package target execs time result
for r in "${results[@]}"; do echo "$r"; done
echo "$total targets, $failed failed"
if [ "$total" -eq 0 ]; then
	echo "no fuzz targets found" >&2
	exit 1
fi
[ "$failed" -eq 0 ]
