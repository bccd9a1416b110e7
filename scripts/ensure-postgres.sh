#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, postgres, pg_ctl) exist, installing Debian's
# package when they are missing. The tests find them via pg_config or /usr/lib/postgresql/*/bin.
set -euo pipefail

have_server() {
  command -v initdb >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if have_server; then
  echo "PostgreSQL server binaries: present"
  exit 0
fi
echo "PostgreSQL server binaries missing: installing Debian's postgresql package"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql >/dev/null
# The package starts a cluster of its own; the tests don't use it.
$SUDO service postgresql stop >/dev/null 2>&1 || true
have_server || { echo "PostgreSQL installation failed: initdb not found" >&2; exit 1; }
echo "PostgreSQL server binaries: installed"
