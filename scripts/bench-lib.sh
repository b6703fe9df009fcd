# bench-lib.sh: what the benchmark scripts share (sourced, not run). Expects $sock (containerd's
# socket) to be set before the functions that reach containerd are called.

say() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }

ctr_() { ctr -a "$sock" "$@"; }

# clear_ns NS: kill and remove every container of the namespace
clear_ns() {
	local ns=$1 id
	for id in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do ctr_ -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
	for id in $(ctr_ -n "$ns" containers ls -q 2>/dev/null); do
		ctr_ -n "$ns" tasks rm -f "$id" >/dev/null 2>&1 || true
		ctr_ -n "$ns" containers rm "$id" >/dev/null 2>&1 || true
	done
}

# drop_ns NS: clear_ns, then remove the namespace's images and the namespace
drop_ns() {
	local ns=$1 img
	clear_ns "$ns"
	for img in $(ctr_ -n "$ns" images ls -q 2>/dev/null); do ctr_ -n "$ns" images rm "$img" >/dev/null 2>&1 || true; done
	ctr_ namespaces rm "$ns" >/dev/null 2>&1 || true
}

# pss PID: the process's proportional set size in KiB (0 when it is gone)
pss() { awk '/^Pss:/ {print $2; exit}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

# rss PID: the process's resident set size in KiB
rss() { awk '/^VmRSS:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null || echo 0; }

# pss_per_task NS: "SHIM_KIB OTHER_KIB" — the mean PSS per task of the namespace's shims, and of
# the other processes that exist per task: the shims' children but the tasks' own processes.
pss_per_task() {
	local ns=$1 shim_kib=0 other_kib=0 tasks shim child inits
	inits=" $(ctr_ -n "$ns" tasks ls | awk 'NR > 1 {print $2}' | tr '\n' ' ') "
	for shim in $(pgrep -f -- "containerd-shim-runc-v2 -namespace $ns " || true); do
		shim_kib=$((shim_kib + $(pss "$shim")))
		for child in $(pgrep -P "$shim" || true); do
			case "$inits" in *" $child "*) continue ;; esac # the task itself
			other_kib=$((other_kib + $(pss "$child")))
		done
	done
	tasks=$(ctr_ -n "$ns" tasks ls -q | grep -c . || true)
	[ "$tasks" -gt 0 ] || { echo "0 0"; return; }
	echo "$((shim_kib / tasks)) $((other_kib / tasks))"
}

# free_port: a TCP port of 127.0.0.1 that nothing listens on now
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# free_port_pair: a port P such that P and P+1 are free (raft and gossip, which defaults to +1)
free_port_pair() {
	python3 -c '
import socket
for _ in range(100):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
'
}

best() { sort -n | head -1; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
