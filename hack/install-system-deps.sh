#!/usr/bin/env bash
# What the tests need from the operating system, installed only when missing (Debian/Ubuntu):
# PostgreSQL 15 server binaries (the local pod runtime stands them in for the postgres image) and
# util-linux's unshare/nsenter (each local pod has its own mount and UTS namespace).
set -euo pipefail
pg_bin=/usr/lib/postgresql/15/bin
need=()
[ -x "$pg_bin/postgres" ] && [ -x "$pg_bin/pg_basebackup" ] && [ -x "$pg_bin/pg_rewind" ] || need+=(postgresql-15)
[ -x "$pg_bin/psql" ] || [ -x /usr/bin/psql ] || need+=(postgresql-client-15)
command -v unshare >/dev/null && command -v nsenter >/dev/null && command -v setpriv >/dev/null || need+=(util-linux)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing ${need[*]}: run 'sudo $0' (or install them) and retry." >&2
  exit 1
fi
echo "Installing ${need[*]} from the distribution's packages"
# No "main" cluster: the tests start their own servers; nothing should listen on 5432 by default.
mkdir -p /etc/postgresql-common/createcluster.d
printf 'create_main_cluster = false\n' > /etc/postgresql-common/createcluster.d/dbonk8s-no-main.conf
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
