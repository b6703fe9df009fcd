#!/usr/bin/env bash
# bench-launch.sh: how long N tasks take to run through agora dev's public API, beside
# containerd's own floor measured in the same run with the same image, and what each task costs
# the host besides itself. `make bench-launch` runs it; the README's performance table quotes it.
#
#   scripts/bench-launch.sh                 # 20 tasks, best of 3 rounds each
#   LAUNCH_N=50 LAUNCH_ROUNDS=5 scripts/bench-launch.sh
#
# The floor: N `ctr run -d` of the test image started at once on the same containerd (each
# returns once its task has started). Agora: one Marathon app of N instances of the same image
# POSTed to /v2/apps of a fresh `agora dev`, until Marathon counts N running (polled every
# 50 ms). Each round starts with no container in the namespace.
#
# Per-task cost: with the tasks running, the PSS (/proc/PID/smaps_rollup) of every process on
# the host that exists for a task but is not the task's own: containerd's shim and whatever else
# runs beside it; shown per task, and as a multiple of the shim alone.
#
# Needs root (containerd's socket and /proc of other processes); starts the project's private
# containerd when no system one answers (scripts/containerd.sh), and removes what it made.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${LAUNCH_N:-20}
rounds=${LAUNCH_ROUNDS:-3}
bin=${AGORA_BIN:-bin/agora}
image=agora.local/testapp:latest
archive=bin/testapp.tar

. scripts/bench-lib.sh

[ -x "$bin" ] || { say "bench-launch: $bin missing (make build)"; exit 1; }
[ -f "$archive" ] || { say "bench-launch: $archive missing (make testapp-image)"; exit 1; }
sock=$(scripts/containerd.sh start)
run=$$
floor_ns=agora-bench-floor-$run
agora_ns=agora-bench-agora-$run
work=$(mktemp -d)
dev_pid=

cleanup() {
	if [ -n "$dev_pid" ]; then
		kill "$dev_pid" 2>/dev/null || true
		wait "$dev_pid" 2>/dev/null || true
	fi
	for ns in "$floor_ns" "$agora_ns"; do drop_ns "$ns"; done
	rm -rf "$work"
}
trap cleanup EXIT

# --- containerd's floor ---------------------------------------------------------------------
ctr_ -n "$floor_ns" images import "$archive" >/dev/null
floor_times=()
for ((r = 1; r <= rounds; r++)); do
	start=$(now)
	for ((i = 1; i <= n; i++)); do
		ctr_ -n "$floor_ns" run -d "$image" "floor-$r-$i" /testapp -sleep 1h >/dev/null &
	done
	wait
	floor_times+=("$(echo "$(now) - $start" | bc)")
	if [ "$r" -eq "$rounds" ]; then
		read -r floor_shim floor_other < <(pss_per_task "$floor_ns")
	fi
	clear_ns "$floor_ns"
done

# --- agora dev ------------------------------------------------------------------------------
"$bin" image import --containerd "$sock" --containerd-namespace "$agora_ns" "$archive" >/dev/null
port=$(free_port)
"$bin" --log-level warn dev --data-dir "$work/data" --containerd "$sock" --containerd-namespace "$agora_ns" \
	--http "127.0.0.1:$port" --bind 127.0.0.1:0 --agent-http 127.0.0.1:0 --dns off \
	--resources "cpus:$((n / 10 + 2));mem:$((n * 64 + 1024));disk:10000;ports:[24000-24100]" >"$work/dev.log" 2>&1 &
dev_pid=$!
base=http://127.0.0.1:$port
for ((i = 0; i < 300; i++)); do
	curl -fsS "$base/v2/apps" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "$base/v2/apps" >/dev/null || { say "bench-launch: agora dev did not answer:"; cat "$work/dev.log" >&2; exit 1; }

running() { curl -fsS "$base/v2/apps/$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["app"]["tasksRunning"])' 2>/dev/null || echo 0; }

agora_times=()
for ((r = 1; r <= rounds; r++)); do
	app="bench-$r"
	body=$(printf '{"id": "/%s", "container": {"type": "DOCKER", "docker": {"image": "%s"}}, "args": ["-sleep", "1h"], "cpus": 0.1, "mem": 32, "instances": %d, "portDefinitions": []}' "$app" "$image" "$n")
	start=$(now)
	code=$(curl -sS -o "$work/post.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "$base/v2/apps")
	[ "$code" = 201 ] || { say "bench-launch: POST /v2/apps: $code $(cat "$work/post.json")"; exit 1; }
	deadline=$(($(date +%s) + 120))
	until [ "$(running "$app")" = "$n" ]; do
		[ "$(date +%s)" -lt "$deadline" ] || { say "bench-launch: $app not running within 120 s"; exit 1; }
		sleep 0.05
	done
	agora_times+=("$(echo "$(now) - $start" | bc)")
	if [ "$r" -eq "$rounds" ]; then
		read -r agora_shim agora_other < <(pss_per_task "$agora_ns")
	fi
	curl -fsS -X DELETE "$base/v2/apps/$app?force=true" >/dev/null
	deadline=$(($(date +%s) + 120))
	until [ -z "$(ctr_ -n "$agora_ns" containers ls -q)" ]; do
		[ "$(date +%s)" -lt "$deadline" ] || { say "bench-launch: $app's containers not gone within 120 s"; exit 1; }
		sleep 0.1
	done
done

# --- the table ------------------------------------------------------------------------------
fb=$(printf '%s\n' "${floor_times[@]}" | best)
fm=$(printf '%s\n' "${floor_times[@]}" | median)
ab=$(printf '%s\n' "${agora_times[@]}" | best)
am=$(printf '%s\n' "${agora_times[@]}" | median)
printf 'launch: %d tasks to running at once, best (median) of %d rounds, %d cores, containerd %s\n' \
	"$n" "$rounds" "$(nproc)" "$(ctr_ version 2>/dev/null | awk '/Server:/ {s = 1} s && /Version:/ {print $2; exit}')"
printf '  %-52s %6.2f s (%.2f s)\n' "containerd's floor: $n ctr run -d at once" "$fb" "$fm"
printf '  %-52s %6.2f s (%.2f s)  %.2fx the floor\n' "agora dev: POST /v2/apps, $n instances, to running" "$ab" "$am" "$(echo "$ab / $fb" | bc -l)"
printf 'per-task cost (PSS besides the task itself):\n'
printf '  %-52s %6d KiB (shim %d KiB + others %d KiB)\n' "containerd's floor (ctr run -d)" "$((floor_shim + floor_other))" "$floor_shim" "$floor_other"
printf '  %-52s %6d KiB (shim %d KiB + others %d KiB)  %.2fx the shim alone\n' "agora" "$((agora_shim + agora_other))" "$agora_shim" "$agora_other" \
	"$(echo "($agora_shim + $agora_other) / $agora_shim" | bc -l)"
