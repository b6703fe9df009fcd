#!/usr/bin/env bash
# bench-agent.sh: one agent holding many tasks (500 by default) — how long they take to run, what
# the agent and each task cost the host, and how fast a restarted agent takes them all back.
# `make bench-agent` runs it; the README's performance table quotes it.
#
#   scripts/bench-agent.sh                   # 500 tasks
#   AGENT_N=100 AGENT_FLOOR=0 scripts/bench-agent.sh
#
# A real cluster of two processes on loopback: `agora master` (alone: it bootstraps itself) and
# `agora agent` on the project's containerd, in a namespace of its own. One Marathon app of N
# instances of the test image (`/testapp -sleep 1h`, 0.005 cpus and 32 MiB each) is POSTed to
# the master's /v2/apps, and timed until Marathon counts N running (polled every 100 ms).
#
# The floor (AGENT_FLOOR=1, the default): the same N containers through `ctr run -d`, 50 at a
# time (N ctr processes at once would need gigabytes themselves), before Agora's run.
#
# Measured at N: the agent's own RSS and PSS, and their growth over the agent with no task,
# per task; each task's cost besides itself (containerd's shim and anything else running beside
# it, PSS), as bench-launch measures it.
#
# Then `kill -9` of the agent and a restart with the same flags: timed until the new agent's
# /v1/tasks answers with all N running (it re-attaches before it serves), and until the master
# has taken its registration (the agent logs it). Checked: every task's process is the one from
# before (same PIDs in containerd), and Marathon has the same N task ids running.
#
# The master's and the agent's logs stay in .artifacts/bench-agent/.
#
# Needs root (containerd's socket and /proc of other processes); starts the project's private
# containerd when no system one answers (scripts/containerd.sh), and removes what it made.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${AGENT_N:-500}
floor=${AGENT_FLOOR:-1}
bin=${AGORA_BIN:-bin/agora}
image=agora.local/testapp:latest
archive=bin/testapp.tar

. scripts/bench-lib.sh

[ -x "$bin" ] || { say "bench-agent: $bin missing (make build)"; exit 1; }
[ -f "$archive" ] || { say "bench-agent: $archive missing (make testapp-image)"; exit 1; }
sock=$(scripts/containerd.sh start)
floor_ns=agora-bench-floor-$$
ns=agora-bench-agent-$$
work=$(mktemp -d)
master_pid= agent_pid=

cleanup() {
	[ -z "$agent_pid" ] || kill -9 "$agent_pid" 2>/dev/null || true
	[ -z "$master_pid" ] || { kill "$master_pid" 2>/dev/null || true; wait "$master_pid" 2>/dev/null || true; }
	drop_ns "$floor_ns"
	drop_ns "$ns"
	mkdir -p .artifacts/bench-agent && cp "$work"/*.log .artifacts/bench-agent/ 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

deadline_in() { echo $(($(date +%s) + $1)); }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# --- containerd's floor ---------------------------------------------------------------------
floor_time=
if [ "$floor" = 1 ]; then
	ctr_ -n "$floor_ns" images import "$archive" >/dev/null
	start=$(now)
	seq "$n" | xargs -P 50 -I{} ctr -a "$sock" -n "$floor_ns" run -d "$image" "floor-{}" /testapp -sleep 1h >/dev/null
	floor_time=$(echo "$(now) - $start" | bc)
	read -r floor_shim floor_other < <(pss_per_task "$floor_ns")
	drop_ns "$floor_ns"
fi

# --- a master and an agent ------------------------------------------------------------------
"$bin" image import --containerd "$sock" --containerd-namespace "$ns" "$archive" >/dev/null
raft=$(free_port_pair)
http=$(free_port)
base=http://127.0.0.1:$http
"$bin" --log-level warn master --data-dir "$work/master" --bind "127.0.0.1:$raft" --http "127.0.0.1:$http" >"$work/master.log" 2>&1 &
master_pid=$!
agent_http=$(free_port)
agent_gossip=$(free_port)
agent_args=(--log-level info agent --join "127.0.0.1:$((raft + 1))" --data-dir "$work/agent" --containerd "$sock"
	--containerd-namespace "$ns" --http "127.0.0.1:$agent_http" --gossip "127.0.0.1:$agent_gossip"
	--resources "cpus:$(echo "$n * 0.005 + 1" | bc);mem:$((n * 32 + 1024));disk:10000;ports:[31000-31010]")
starts=0
start_agent() {
	starts=$((starts + 1))
	"$bin" "${agent_args[@]}" >"$work/agent.$starts.log" 2>&1 &
	agent_pid=$!
}
start_agent

active_agents() { curl -fsS "$base/v1/agents" 2>/dev/null | json 'sum(1 for a in d if a.get("state") == "active")' 2>/dev/null || echo 0; }
until=$(deadline_in 60)
until [ "$(active_agents)" = 1 ]; do
	[ "$(date +%s)" -lt "$until" ] || { say "bench-agent: no active agent within 60 s:"; tail -20 "$work/master.log" "$work/agent.$starts.log" >&2; exit 1; }
	sleep 0.2
done
sleep 2 # the agent settles (its first statistics, gossip)
agent_rss0=$(rss "$agent_pid")
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; } # user + system
agent_cpu0=$(cpu_s "$agent_pid") master_cpu0=$(cpu_s "$master_pid") ctrd_cpu0=$(cpu_s "$(pgrep -o -x containerd)")
agent_pss0=$(pss "$agent_pid")

# --- N tasks to running ---------------------------------------------------------------------
running() { curl -fsS "$base/v2/apps/bench" 2>/dev/null | json 'd["app"]["tasksRunning"]' 2>/dev/null || echo 0; }
body=$(printf '{"id": "/bench", "container": {"type": "DOCKER", "docker": {"image": "%s"}}, "args": ["-sleep", "1h"], "cpus": 0.005, "mem": 32, "instances": %d, "portDefinitions": []}' "$image" "$n")
start=$(now)
code=$(curl -sS -o "$work/post.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "$base/v2/apps")
[ "$code" = 201 ] || { say "bench-agent: POST /v2/apps: $code $(cat "$work/post.json")"; exit 1; }
until=$(deadline_in 900)
until [ "$(running)" = "$n" ]; do
	[ "$(date +%s)" -lt "$until" ] || { say "bench-agent: $(running) of $n running after 900 s"; tail -20 "$work/agent.$starts.log" >&2; exit 1; }
	sleep 0.1
done
launch_time=$(echo "$(now) - $start" | bc)
agent_cpu=$(echo "$(cpu_s "$agent_pid") - $agent_cpu0" | bc) master_cpu=$(echo "$(cpu_s "$master_pid") - $master_cpu0" | bc)
ctrd_cpu=$(echo "$(cpu_s "$(pgrep -o -x containerd)") - $ctrd_cpu0" | bc)
sleep 5 # every task's first health and statistics rounds, the spools' first copies
agent_rss=$(rss "$agent_pid")
agent_pss=$(pss "$agent_pid")
read -r shim other < <(pss_per_task "$ns")

# --- kill -9 and restart --------------------------------------------------------------------
task_pids() { ctr_ -n "$ns" tasks ls | awk 'NR > 1 {print $1, $2, $3}' | sort; }
task_ids() { curl -fsS "$base/v2/apps/bench/tasks" | json '"\n".join(sorted(t["id"] + " " + t["state"] for t in d["tasks"]))'; }
task_pids >"$work/pids.before"
task_ids >"$work/ids.before"
kill -9 "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
start=$(now)
start_agent
agent_running() { curl -fsS "http://127.0.0.1:$agent_http/v1/tasks" 2>/dev/null | json 'sum(1 for t in d if t["status"]["state"] == "TASK_RUNNING")' 2>/dev/null || echo 0; }
until=$(deadline_in 120)
until [ "$(agent_running)" = "$n" ]; do
	[ "$(date +%s)" -lt "$until" ] || { say "bench-agent: the restarted agent has $(agent_running) of $n running after 120 s"; tail -20 "$work/agent.$starts.log" >&2; exit 1; }
	sleep 0.05
done
reattach_time=$(echo "$(now) - $start" | bc)
until=$(deadline_in 120)
until grep -q 'msg=registered' "$work/agent.2.log"; do
	[ "$(date +%s)" -lt "$until" ] || { say "bench-agent: the master did not see the agent again within 120 s"; exit 1; }
	sleep 0.05
done
register_time=$(echo "$(now) - $start" | bc)
sleep 3 # anything the restart would have set off (a relaunch, a status) shows by now
task_pids >"$work/pids.after"
task_ids >"$work/ids.after"
if ! cmp -s "$work/pids.before" "$work/pids.after"; then
	say "bench-agent: tasks' processes changed across the agent's restart:"
	diff "$work/pids.before" "$work/pids.after" | head >&2
	exit 1
fi
if ! cmp -s "$work/ids.before" "$work/ids.after" || [ "$(running)" != "$n" ]; then
	say "bench-agent: Marathon's tasks changed across the agent's restart:"
	diff "$work/ids.before" "$work/ids.after" | head >&2
	exit 1
fi

# --- the table ------------------------------------------------------------------------------
mib() { echo "scale=1; $1 / 1024" | bc; }
printf 'agent: %d tasks on one agent, %d cores, containerd %s\n' "$n" "$(nproc)" \
	"$(ctr_ version 2>/dev/null | awk '/Server:/ {s = 1} s && /Version:/ {print $2; exit}')"
if [ -n "$floor_time" ]; then
	printf '  %-58s %7.2f s\n' "containerd's floor: $n ctr run -d, 50 at a time" "$floor_time"
	printf '  %-58s %7.2f s  %.2fx the floor\n' "agora: POST /v2/apps, $n instances, to running" "$launch_time" "$(echo "$launch_time / $floor_time" | bc -l)"
else
	printf '  %-58s %7.2f s\n' "agora: POST /v2/apps, $n instances, to running" "$launch_time"
fi
printf '  %-58s %7.1f s CPU (the master %.1f s, containerd %.1f s)\n' "  the agent's own work for it" "$agent_cpu" "$master_cpu" "$ctrd_cpu"
printf '  %-58s %7s MiB RSS, %s MiB PSS (%s, %s with no task)\n' "the agent's own memory at $n tasks" "$(mib "$agent_rss")" "$(mib "$agent_pss")" \
	"$(mib "$agent_rss0")" "$(mib "$agent_pss0")"
printf '  %-58s %7d KiB RSS, %d KiB PSS\n' "  of it per task" "$(((agent_rss - agent_rss0) / n))" "$(((agent_pss - agent_pss0) / n))"
printf '  %-58s %7d KiB PSS (shim %d KiB + others %d KiB)\n' "each task besides itself" "$((shim + other))" "$shim" "$other"
[ -z "$floor_time" ] || printf '  %-58s %7d KiB PSS\n' "  a ctr run -d task's shim" "$((floor_shim + floor_other))"
printf '  %-58s %7.2f s\n' "kill -9 of the agent, restart: all $n re-attached" "$reattach_time"
printf '  %-58s %7.2f s\n' "  and registered with the master again" "$register_time"
printf '  %-58s\n' "  no task restarted: the same $n processes and task ids"
