#!/usr/bin/env bash
# Runs every fuzz target of the module (every `func FuzzX` in a _test.go file) for a bounded time:
#   scripts/fuzz.sh 10s            # each target 10 s
#   GO=go1.27 scripts/fuzz.sh 3s   # another go command
#   FUZZ_LANES=2 scripts/fuzz.sh 3s # two targets at a time, the cores shared between them
# A target fails when go test finds an input that breaks it (go writes it under
# testdata/fuzz/<target>/ and says "Failing input written"), or on any other error.
#
# One failure is not a finding and is run again once: Go before 1.27 may end a duration-bounded
# run with a bare "context deadline exceeded" right at -fuzztime when a worker is still busy
# (go.dev/issue/75804, fixed in Go 1.27). Such a run wrote no input and reported no panic or
# t.Error; the script says so, runs the target again, and fails if it fails again.
# Every target runs even after one has failed; the exit status is 1 when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-10s}
go=${GO:-go}
failed=()

# corpus DIR TARGET: the names of the inputs go has saved for TARGET, one per line
corpus() { ls "$1/testdata/fuzz/$2" 2>/dev/null || true; }

# deadline_flake LOG BEFORE AFTER: true when LOG is only the coordinator's deadline race
deadline_flake() {
	grep -q '^ *context deadline exceeded$' "$1" &&
		! grep -q -E 'Failing input written|^panic:|_test\.go:[0-9]+:' "$1" &&
		[ "$2" = "$3" ]
}

# fuzz_target DIR TARGET: runs one target (again once after Go's deadline race), printing what
# go printed; its status is 1 when the target failed.
fuzz_target() {
	local dir=$1 target=$2 attempt log before after rc
	for attempt in 1 2; do
		echo "fuzz $target in $dir for $fuzztime"
		log=$(mktemp)
		before=$(corpus "$dir" "$target")
		"$go" test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -parallel "$workers" "$dir" >"$log" 2>&1
		rc=$?
		after=$(corpus "$dir" "$target")
		grep -v '^fuzz: elapsed' "$log"
		if [ $rc -eq 0 ]; then
			rm -f "$log"
			return 0
		fi
		if [ $attempt -eq 1 ] && deadline_flake "$log" "$before" "$after"; then
			echo "fuzz $target: ended on Go's -fuzztime deadline race (go.dev/issue/75804) with no failing input; running it again"
			rm -f "$log"
			continue
		fi
		rm -f "$log"
		return 1
	done
}

targets=()
for file in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
	for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		targets+=("$(dirname "$file") $target")
	done
done

# Lane i runs targets i, i+lanes, ... one after another, each with cores/lanes fuzzing workers,
# into a log of its own; the logs print in lane order once every lane is done.
lanes=${FUZZ_LANES:-1}
cores=$(nproc)
workers=$(( cores / lanes > 0 ? cores / lanes : 1 ))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((lane = 0; lane < lanes; lane++)); do
	(
		for ((i = lane; i < ${#targets[@]}; i += lanes)); do
			read -r dir target <<<"${targets[$i]}"
			fuzz_target "$dir" "$target" || echo "$target ($dir)" >>"$tmp/failed.$lane"
		done
	) >"$tmp/log.$lane" 2>&1 &
done
wait
for ((lane = 0; lane < lanes; lane++)); do
	cat "$tmp/log.$lane"
	[ -f "$tmp/failed.$lane" ] && mapfile -t -O "${#failed[@]}" failed <"$tmp/failed.$lane"
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} target(s) failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: every target ran for $fuzztime with no failure"
