#!/usr/bin/env bash
# chromium.sh makes sure a headless Chromium is there for the UI's browser tests and prints its path.
#
#   scripts/chromium.sh     find chromium (AGORA_CHROMIUM, then PATH); when missing and we run as
#                           root, install Debian's `chromium` package first (apt-get update first)
#
# The browser tests (master/ui) read AGORA_CHROMIUM; `make test` sets it from this script.
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }

find_chromium() {
	if [ -n "${AGORA_CHROMIUM:-}" ] && [ -x "$AGORA_CHROMIUM" ]; then
		printf '%s\n' "$AGORA_CHROMIUM"
		return 0
	fi
	local c
	for c in chromium chromium-browser google-chrome-stable google-chrome; do
		if command -v "$c" >/dev/null 2>&1; then
			command -v "$c"
			return 0
		fi
	done
	return 1
}

if find_chromium; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	say "chromium.sh: no chromium found; install Debian's package as root: apt-get install chromium"
	exit 1
fi
say "chromium.sh: installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
find_chromium || { say "chromium.sh: chromium installed but not found on PATH"; exit 1; }
