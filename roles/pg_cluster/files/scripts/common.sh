#!/usr/bin/env bash
# shellcheck disable=SC2034  # constants for the scripts that source this file
# Sourced by every pod script: paths, logging, credentials and the record of the primary.
# The same file runs in the postgres:15-alpine image (busybox tools) and in the local pod runtime
# (Debian), so it uses only bash and POSIX tools.

SCRIPT_NAME=${0##*/}
readonly SCRIPT_NAME
readonly CONFIG_DIR=/etc/postgresql/config
readonly CONFIG_FILE=${CONFIG_DIR}/postgresql.conf
readonly HBA_FILE=${CONFIG_DIR}/pg_hba.conf
readonly SECRET_DIR=/etc/postgresql/secret
readonly RECORD_DIR=/etc/postgresql/cluster
readonly RUN_DIR=/var/run/postgresql
readonly PASSFILE=${RUN_DIR}/.pgpass
readonly HOLD_FILE=${RUN_DIR}/hold
# Written by start.sh for probe.sh: preparing (before postgres runs), running, held.
readonly PHASE_FILE=${RUN_DIR}/supervisor.phase
readonly ARCHIVE_ROOT=/var/lib/postgresql/wal-archive
readonly EPOCH_FILE_NAME=dbonk8s.epoch
readonly DIVERGED_SUFFIX=.diverged
: "${PGDATA:?PGDATA must be set}"
: "${POD_NAME:?POD_NAME must be set}"
: "${PG_CLUSTER_NAME:?PG_CLUSTER_NAME must be set}"
: "${PG_HEADLESS_SERVICE:?PG_HEADLESS_SERVICE must be set}"
export PGHOST=${PGHOST:-${RUN_DIR}}
export PGPORT=${PGPORT:-5432}
export PGUSER=${PGUSER:-postgres}
export PGPASSFILE=${PASSFILE}
# Files written by PostgreSQL tools and by these scripts are private to the postgres user.
umask 0077

log() {
    printf '%s: %s\n' "${SCRIPT_NAME}" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# The staging directory that initdb and pg_basebackup write into: PGDATA appears only complete.
staging_dir() {
    printf '%s.new' "${PGDATA}"
}

# A setting of the mounted postgresql.conf (last occurrence wins, as in PostgreSQL), unquoted.
config_value() {
    local name=$1 line value=''
    while IFS= read -r line; do
        case "${line}" in
            "${name}"[[:space:]]*=* | "${name}"=*)
                value=${line#*=}
                value=${value%%#*}
                value=$(printf '%s' "${value}" | sed -e "s/^[[:space:]]*//" -e "s/[[:space:]]*\$//" -e "s/^'//" -e "s/'\$//")
                ;;
        esac
    done <"${CONFIG_FILE}"
    printf '%s' "${value}"
}

replication_user() {
    local user
    user=$(config_value dbonk8s.replication_user)
    printf '%s' "${user:-replicator}"
}

secret() {
    local key=$1
    [[ -r "${SECRET_DIR}/${key}" ]] || die "secret file ${SECRET_DIR}/${key} is missing"
    # Kubernetes keeps the value as written; a trailing newline is not part of a password.
    local value
    value=$(cat "${SECRET_DIR}/${key}")
    printf '%s' "${value%$'\n'}"
}

# .pgpass from the Secret files: libpq reads it for every connection the scripts and the
# walreceiver make, so no password is ever on a command line or in an environment variable.
write_pgpass() {
    local tmp escaped_super escaped_repl
    escaped_super=$(secret superuser-password | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')
    escaped_repl=$(secret replication-password | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')
    tmp=$(mktemp "${RUN_DIR}/.pgpass.XXXXXX")
    chmod 0600 "${tmp}"
    {
        printf '*:*:*:%s:%s\n' "${PGUSER}" "${escaped_super}"
        printf '*:*:*:%s:%s\n' "$(replication_user)" "${escaped_repl}"
    } >"${tmp}"
    mv -f "${tmp}" "${PASSFILE}"
}

record_primary() {
    local primary
    primary=$(cat "${RECORD_DIR}/primary" 2>/dev/null) || die "the record of the primary (${RECORD_DIR}/primary) is missing"
    [[ -n "${primary}" ]] || die "the record of the primary names no member"
    printf '%s' "${primary}"
}

record_epoch() {
    local epoch
    epoch=$(cat "${RECORD_DIR}/epoch" 2>/dev/null) || die "the record's epoch (${RECORD_DIR}/epoch) is missing"
    [[ "${epoch}" =~ ^[0-9]+$ ]] || die "the record's epoch is not a number: ${epoch}"
    printf '%s' "${epoch}"
}

# The epoch this member was last configured for; 0 when it never was.
local_epoch() {
    local dir=${1:-${PGDATA}} epoch
    epoch=$(cat "${dir}/${EPOCH_FILE_NAME}" 2>/dev/null || true)
    [[ "${epoch}" =~ ^[0-9]+$ ]] || epoch=0
    printf '%s' "${epoch}"
}

write_local_epoch() {
    local epoch=$1 dir=${2:-${PGDATA}}
    printf '%s\n' "${epoch}" >"${dir}/${EPOCH_FILE_NAME}.tmp"
    mv -f "${dir}/${EPOCH_FILE_NAME}.tmp" "${dir}/${EPOCH_FILE_NAME}"
}

# The address of a member as the headless Service publishes it.
member_host() {
    printf '%s.%s' "$1" "${PG_HEADLESS_SERVICE}"
}

# application_name is the pod name for the walreceiver (synchronous_standby_names lists pod
# names); pg_basebackup and the scripts pass another one, so that a clone's WAL stream is never
# taken for a synchronous standby.
replication_conninfo() {
    local host=$1 application_name=${2:-${POD_NAME}}
    printf 'host=%s port=%s user=%s passfile=%s application_name=%s connect_timeout=5 keepalives_idle=10 keepalives_interval=5 keepalives_count=3' \
        "${host}" "${PGPORT}" "$(replication_user)" "${PASSFILE}" "${application_name}"
}

# Set (or, with an empty value, remove) a parameter in PGDATA/postgresql.auto.conf while the server
# is stopped; a running server is changed with ALTER SYSTEM instead.
set_auto_conf() {
    local dir=$1 name=$2 value=$3 file tmp
    file=${dir}/postgresql.auto.conf
    tmp=${file}.tmp
    {
        if [[ -f "${file}" ]]; then
            grep -v -E "^[[:space:]]*${name}[[:space:]]*=" "${file}" || true
        else
            printf '# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n'
        fi
        if [[ -n "${value}" ]]; then
            printf "%s = '%s'\n" "${name}" "${value//\'/\'\'}"
        fi
    } >"${tmp}"
    mv -f "${tmp}" "${file}"
}

# Turn a data directory into a standby of the given member.
configure_standby() {
    local dir=$1 primary=$2
    set_auto_conf "${dir}" primary_conninfo "$(replication_conninfo "$(member_host "${primary}")")"
    rm -f "${dir}/recovery.signal"
    : >"${dir}/standby.signal"
}

# PostgreSQL reads this file when started without -c config_file (pg_rewind's crash recovery,
# an operator's pg_ctl): it points at the mounted configuration, never a copy of it.
write_config_stub() {
    local dir=$1
    printf "# The configuration is the mounted ConfigMap; never edit a copy here.\ninclude '%s'\n" "${CONFIG_FILE}" >"${dir}/postgresql.conf"
    rm -f "${dir}/pg_hba.conf"
}

controldata_value() {
    local dir=$1 key=$2
    LC_ALL=C pg_controldata -D "${dir}" 2>/dev/null | sed -n "s/^${key}:[[:space:]]*//p"
}

# IDENTIFY_SYSTEM over a replication connection: "systemid timeline" of a member, or nothing (and a
# non-zero status) when it does not answer.
identify_system() {
    local host=$1
    psql "$(replication_conninfo "${host}" "${POD_NAME}-${SCRIPT_NAME%.sh}") replication=true dbname=replication" \
        -X -A -t -F ' ' -c 'IDENTIFY_SYSTEM' 2>/dev/null | awk 'NF >= 2 { print $1, $2; exit }'
}

# pg_rewind decides whether this member's WAL went past the point where the new primary's timeline
# forked; it exits at once with "no rewind required" after a clean switchover. Prints yes when it
# rewound, no when nothing was needed; fails when the source or pg_rewind failed.
rewind_from() {
    local host=$1 output restore_opts=()
    if [[ -n "$(config_value restore_command)" ]]; then
        restore_opts=(--restore-target-wal)
    fi
    # PostgreSQL 15's pg_rewind reads the source's timeline from its control file, which a just
    # promoted primary updates only at its first checkpoint: without one, pg_rewind would compare
    # against the old timeline and miss a divergence (documented in pg_rewind's notes).
    psql -X -q -d "host=${host} port=${PGPORT} user=${PGUSER} dbname=postgres passfile=${PASSFILE} connect_timeout=5" \
        -c CHECKPOINT >/dev/null || return 1
    rm -f "${PGDATA}/standby.signal" "${PGDATA}/recovery.signal"
    if ! output=$(pg_rewind --target-pgdata="${PGDATA}" --config-file="${CONFIG_FILE}" "${restore_opts[@]}" \
        --source-server="host=${host} port=${PGPORT} user=${PGUSER} dbname=postgres passfile=${PASSFILE} connect_timeout=5" 2>&1); then
        printf '%s\n' "${output}" >&2
        return 1
    fi
    printf '%s\n' "${output}" >&2
    if grep -q 'no rewind required' <<<"${output}"; then
        printf no
    else
        # pg_rewind copies the source's configuration files: make this member's own again.
        write_config_stub "${PGDATA}"
        printf yes
    fi
}
