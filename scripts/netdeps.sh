#!/usr/bin/env bash
# netdeps.sh makes sure the tools of the chaos suite's real networks are there: iproute2 (ip, tc)
# for network namespaces, veth pairs and bridges, and iptables and nftables for the packet filters
# that make partitions, loss and delay between the namespaces; and dig (bind9-dnsutils), which the
# DNS tests ask the masters' DNS servers with, as users do; and HAProxy (Debian's haproxy), which
# `agora lb` and its tests run. The package's own haproxy.service is stopped and disabled: agora lb
# runs HAProxy itself (or reloads a unit the operator chose), and tests bind no fixed port.
#
#   scripts/netdeps.sh      install what is missing from Debian's packages (as root, apt-get update
#                           first); print "ok" when all of them answer, or why not (exit 1) as a
#                           user without root, who can still run the chaos suite on loopback
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }

missing() {
	local m=()
	command -v ip >/dev/null 2>&1 || m+=(iproute2)
	command -v iptables >/dev/null 2>&1 || m+=(iptables)
	command -v nft >/dev/null 2>&1 || m+=(nftables)
	command -v dig >/dev/null 2>&1 || m+=(bind9-dnsutils)
	command -v haproxy >/dev/null 2>&1 || m+=(haproxy)
	printf '%s\n' "${m[@]}"
}

need=$(missing)
if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		say "netdeps.sh: missing $(echo $need) (installing needs root; the chaos suite falls back to loopback, the DNS tests need dig)"
		exit 1
	fi
	say "netdeps.sh: installing $(echo $need) from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >&2
	# Debian starts haproxy.service on install; its stock config serves nothing, but agora lb (or a
	# test) should be the only HAProxy here unless the operator says otherwise.
	if [[ " $need " == *" haproxy "* ]] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now haproxy.service >&2 || true
	fi
	need=$(missing)
	[ -z "$need" ] || { say "netdeps.sh: still missing after the install: $(echo $need)"; exit 1; }
fi
echo ok
