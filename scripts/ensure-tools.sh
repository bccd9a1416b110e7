#!/usr/bin/env bash
# Makes sure the command-line tools some tests drive exist: flock(1) (util-linux: the SQLite
# lease is checked against another process's lock), openssl(1) (a private CA for the
# PostgreSQL TLS test) and chromium (headless: tests/operating_browser.rs renders the console
# and the run report in a real browser). Installs Debian's packages when they are missing; the
# tests fail, never skip, without them.
set -euo pipefail

missing=()
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  echo "test tools (flock, openssl, chromium): present"
  exit 0
fi
echo "installing ${missing[*]} for the tests"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v flock >/dev/null && command -v openssl >/dev/null && command -v chromium >/dev/null || {
  echo "installing ${missing[*]} failed" >&2
  exit 1
}
