#!/usr/bin/env bash
# test.sh: every test of the module against a real containerd and a headless Chromium, as
# `make test` runs them (the Makefile finds or starts both and exports AGORA_CONTAINERD_SOCK and
# AGORA_CHROMIUM first).
#
# Two runs at once, so that 2 cores finish in minutes rather than a quarter of an hour:
#   - every package but cmd/agora, with the race detector, two packages at a time, the longest
#     first; printed as it goes;
#   - cmd/agora, the end-to-end tests (agora dev, masters and agents as processes, the CLI, the
#     UI), three at a time, without the race detector: their nodes' code is raced in its own
#     packages' tests, and under -race these tests need twice the CPU; printed when done.
#     E2E_RACE=1 runs them with the race detector too (then make test takes about 13 minutes).
# Timings of every test go to .artifacts/*-timing.json; failed UI tests leave screenshots there.
#
# Environment: GO (go), TEST_TIMEOUT (20m), TEST_P (2), E2E_PARALLEL (3), E2E_RACE.
set -uo pipefail
cd "$(dirname "$0")/.."

go=${GO:-go}
timeout=${TEST_TIMEOUT:-20m}
art=$PWD/.artifacts
mkdir -p "$art"
e2e_race=()
[ "${E2E_RACE:-}" = 1 ] && e2e_race=(-race)

"$go" tool gotestsum --format testname --jsonfile-timing-events "$art/e2e-timing.json" -- \
	"${e2e_race[@]}" -count=1 -parallel "${E2E_PARALLEL:-3}" -timeout "$timeout" \
	-artifacts -outputdir "$art" ./cmd/agora >"$art/e2e.log" 2>&1 &
e2e=$!

# The longest first (chaos 300 s, agent 225 s, master 80 s, agent/containerd 65 s, raft 35 s,
# frameworks/chronos 35 s on 2 cores), so that none starts late and runs on alone.
first=(./chaos ./agent ./master ./agent/containerd ./raft ./frameworks/chronos)
skip=(-e '.*/cmd/agora')
for p in "${first[@]}"; do skip+=(-e ".*/${p#./}"); done
rest=$("$go" list ./... | grep -v -x "${skip[@]}")
"$go" tool gotestsum --format testname --jsonfile-timing-events "$art/test-timing.json" -- \
	-race -count=1 -p "${TEST_P:-2}" -timeout "$timeout" -artifacts -outputdir "$art" \
	"${first[@]}" $rest
rc=$?

wait "$e2e"
e2e_rc=$?
echo
echo "=== cmd/agora (end-to-end tests, run beside the others) ==="
cat "$art/e2e.log"
[ $rc -eq 0 ] && [ $e2e_rc -eq 0 ]
