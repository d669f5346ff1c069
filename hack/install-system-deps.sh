#!/usr/bin/env bash
# What the tests need from the operating system, installed only when missing (Debian/Ubuntu):
# PostgreSQL 15 server binaries (the local pod runtime stands them in for the postgres image) and
# util-linux's unshare/nsenter (each local pod has its own mount and UTS namespace). PostgreSQL 15
# comes from the distribution when it has it (Debian 12), else from apt.postgresql.org.
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
# No "main" cluster: the tests start their own servers; nothing should listen on 5432 by default.
mkdir -p /etc/postgresql-common/createcluster.d
printf 'create_main_cluster = false\n' > /etc/postgresql-common/createcluster.d/dbonk8s-no-main.conf
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq

# True when apt can install package $1 ("Candidate: (none)", or no output at all, when it cannot).
has_candidate() {
  local candidate
  candidate=$(LC_ALL=C apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

# Debian bookworm ships PostgreSQL 15; Ubuntu jammy (14) and noble (16) do not. There,
# postgresql-common's own script adds the PostgreSQL project's repository (apt.postgresql.org,
# signed with the key that postgresql-common ships) and runs apt-get update.
origin="from the distribution's packages"
for package in "${need[@]}"; do
  if [[ $package == postgresql*-15 ]] && ! has_candidate "$package"; then
    echo "$package is not in this distribution's packages: adding the PostgreSQL apt repository (apt.postgresql.org) with postgresql-common's apt.postgresql.org.sh"
    apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
    /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y >/dev/null
    origin="(PostgreSQL from apt.postgresql.org)"
    break
  fi
done
echo "Installing ${need[*]} $origin"
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
