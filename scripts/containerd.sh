#!/usr/bin/env bash
# containerd.sh makes sure a containerd answers for Agora's development and tests.
#
#   scripts/containerd.sh start     use the system containerd if its socket answers, else start a
#                                   private one under .containerd/; prints the socket path
#                                   (and installs e2fsprogs, whose mkfs.ext4 makes the agents'
#                                   persistent volumes, when it is missing)
#   scripts/containerd.sh address   print the socket path in use (starting nothing); exit 1 if none answers
#   scripts/containerd.sh status    say which containerd answers, if any
#   scripts/containerd.sh stop      stop the private containerd (never the system one)
#
# The private daemon keeps its root, state, config, log and socket in .containerd/ at the top of the
# checkout (ignored by git). `start` is idempotent: a second call reuses the running daemon. When
# containerd or runc is missing and we run as root, they are installed from Debian's packages.
#
# Environment:
#   AGORA_CONTAINERD_SOCK   use this socket and nothing else (it must answer)
#   AGORA_CONTAINERD_DIR    where the private daemon lives (default: <checkout>/.containerd)
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
system_sock=/run/containerd/containerd.sock
dir=${AGORA_CONTAINERD_DIR:-$top/.containerd}
pidfile=$dir/containerd.pid
log=$dir/containerd.log
config=$dir/config.toml

say() { printf '%s\n' "$*" >&2; }
die() { say "containerd.sh: $*"; exit 1; }

# A unix socket path may hold at most 107 bytes; a deep checkout gets a short socket under /run.
private_sock() {
	local s=$dir/containerd.sock
	if [ ${#s} -gt 100 ]; then
		s=/run/agora-containerd-$(printf '%s' "$dir" | sha256sum | cut -c1-12)/containerd.sock
	fi
	printf '%s\n' "$s"
}

# answers SOCK: true when a containerd serves the socket.
answers() {
	[ -S "$1" ] || return 1
	command -v ctr >/dev/null 2>&1 || return 1
	timeout 5 ctr --address "$1" version >/dev/null 2>&1
}

private_pid() {
	[ -f "$pidfile" ] || return 1
	local pid
	pid=$(cat "$pidfile")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

install_packages() {
	local missing=()
	command -v containerd >/dev/null 2>&1 || missing+=(containerd)
	command -v containerd-shim-runc-v2 >/dev/null 2>&1 || missing+=(containerd)
	command -v runc >/dev/null 2>&1 || missing+=(runc)
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "containerd and runc are needed: install them as root with 'apt-get install containerd runc', or run this script as root."
	fi
	say "containerd.sh: installing ${missing[*]} from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q containerd runc >/dev/null
}

# volume_tools: e2fsprogs's mkfs.ext4, with which agents make persistent volumes (mount and
# losetup are util-linux's, on every Debian); installed when missing and we run as root.
volume_tools() {
	PATH=$PATH:/sbin:/usr/sbin command -v mkfs.ext4 >/dev/null 2>&1 && return 0
	if [ "$(id -u)" -ne 0 ]; then
		say "containerd.sh: mkfs.ext4 is missing (agents need it for persistent volumes): install e2fsprogs as root"
		return 0
	fi
	say "containerd.sh: installing e2fsprogs from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q e2fsprogs >/dev/null
}

find_answering() {
	if [ -n "${AGORA_CONTAINERD_SOCK:-}" ]; then
		answers "$AGORA_CONTAINERD_SOCK" && { printf '%s\n' "$AGORA_CONTAINERD_SOCK"; return 0; }
		return 1
	fi
	local p
	p=$(private_sock)
	if answers "$system_sock"; then printf '%s\n' "$system_sock"; return 0; fi
	if answers "$p"; then printf '%s\n' "$p"; return 0; fi
	return 1
}

write_config() {
	local sock=$1
	cat >"$config" <<EOF
# Written by scripts/containerd.sh: a private containerd for Agora's development and tests.
version = 2
root = "$dir/root"
state = "$dir/state"
# Agora talks to containerd directly; Kubernetes' CRI plugin is not needed.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
EOF
}

start() {
	local sock
	volume_tools
	if sock=$(find_answering); then
		printf '%s\n' "$sock"
		return 0
	fi
	[ -z "${AGORA_CONTAINERD_SOCK:-}" ] || die "AGORA_CONTAINERD_SOCK=$AGORA_CONTAINERD_SOCK does not answer."
	install_packages
	[ "$(id -u)" -eq 0 ] || die "no containerd answers and a private one needs root: run this script as root, or start containerd ($system_sock) yourself."

	sock=$(private_sock)
	mkdir -p "$dir" "$(dirname "$sock")"
	if pid=$(private_pid); then
		# Started but not answering yet (or wedged): give it a moment before starting another.
		wait_for "$sock" "$pid" && { printf '%s\n' "$sock"; return 0; }
		die "the private containerd (pid $pid) does not answer on $sock; see $log, or run '$0 stop' first."
	fi
	rm -f "$sock" "$sock.ttrpc"
	write_config "$sock"
	# setsid: the daemon outlives this script and the make or test process that called it.
	setsid containerd --config "$config" >>"$log" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$pidfile"
	if ! wait_for "$sock" "$pid"; then
		say "containerd.sh: the private containerd did not answer on $sock; the last lines of $log:"
		tail -n 20 "$log" >&2 || true
		exit 1
	fi
	say "containerd.sh: started a private containerd (pid $pid) on $sock"
	printf '%s\n' "$sock"
}

# wait_for SOCK PID: up to 30 s for the daemon to answer; false if it died or never answered.
wait_for() {
	local i
	for i in $(seq 1 150); do
		answers "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

stop() {
	local pid
	if ! pid=$(private_pid); then
		rm -f "$pidfile"
		say "containerd.sh: no private containerd is running"
		return 0
	fi
	kill -TERM "$pid"
	local i
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	rm -f "$pidfile"
	say "containerd.sh: stopped the private containerd (pid $pid)"
}

status() {
	local sock
	if sock=$(find_answering); then
		if [ "$sock" = "$system_sock" ]; then say "system containerd answers on $sock"; else say "containerd answers on $sock"; fi
		printf '%s\n' "$sock"
		return 0
	fi
	say "no containerd answers"
	return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
address) find_answering || die "no containerd answers; run '$0 start'." ;;
*)
	say "usage: $0 start|stop|status|address"
	exit 2
	;;
esac
