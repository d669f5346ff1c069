#!/usr/bin/env bash
# Init container init-postgres: gives an empty data volume its data, then exits.
# - data present: nothing to do (start.sh decides the role every time PostgreSQL starts);
# - the recorded primary of a new cluster (epoch 1): initdb, then the replication role;
# - anyone else: pg_basebackup from the recorded primary, retrying until it answers.
# initdb and pg_basebackup write into PGDATA.new, renamed to PGDATA once complete, so that an
# interrupted attempt never leaves a half-made PGDATA that a later start would take for data.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly CLONE_RETRY_SECONDS=${PG_CLONE_RETRY_SECONDS:-2}

# A recorded primary with an empty volume and epoch 1 looks like a new cluster; it is not one if
# a member already answers (the primary's volume was lost). initdb there would give the cluster an
# empty primary and the standbys would have to be thrown away to follow it: refuse instead.
refuse_if_cluster_exists() {
    local ordinal host pids=() hosts=() index max_members=${PG_MAX_MEMBERS:-16}
    # A number, never an expression: bash arithmetic would run what a crafted value holds.
    [[ "${max_members}" =~ ^[1-9][0-9]{0,3}$ ]] || die "PG_MAX_MEMBERS=${max_members} is not a member count"
    # Every ordinal a member can have (PG_MAX_MEMBERS, the role's limit), in parallel: every probe is
    # bounded by its own timeout, and most names do not even resolve.
    for ordinal in $(seq 0 $((max_members - 1))); do
        [[ "${PG_CLUSTER_NAME}-${ordinal}" == "${POD_NAME}" ]] && continue
        host=$(member_host "${PG_CLUSTER_NAME}-${ordinal}")
        pg_isready -q -h "${host}" -p "${PGPORT}" -t 2 >/dev/null 2>&1 &
        pids+=("$!")
        hosts+=("${host}")
    done
    for index in "${!pids[@]}"; do
        if wait "${pids[${index}]}"; then
            die "member ${hosts[${index}]} is running although this recorded primary has no data: refusing to initialise a new, empty cluster over it; fail over to a member with data, or delete every volume to start anew"
        fi
    done
}

initialise() {
    local stage=$1 superuser_password_file
    log "initialising a new cluster in ${PGDATA} (data checksums, scram-sha-256)"
    superuser_password_file=$(mktemp "${RUN_DIR}/.pw.XXXXXX")
    secret superuser-password >"${superuser_password_file}"
    # C.UTF-8 sorts by code point, the same in musl (the image) and glibc: no collation drift
    # between images that would corrupt indexes.
    # Small WAL segments keep the WAL file work inside a switchover's write pause small (the
    # shutdown's segment switch, its archiving, the promotion's copy of the last segment).
    if ! initdb -D "${stage}" --wal-segsize="${PG_WAL_SEGMENT_SIZE_MB:-16}" --data-checksums --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 --username="${PGUSER}" \
        --pwfile="${superuser_password_file}" >&2; then
        rm -f "${superuser_password_file}"
        die "initdb failed"
    fi
    rm -f "${superuser_password_file}"
    write_config_stub "${stage}"

    # A private server (no TCP, no synchronous standbys to wait for, no archiving) to create the
    # replication role; the password is read by psql from the file, never put on a command line.
    pg_ctl -D "${stage}" -w -t 60 -l "${RUN_DIR}/init-server.log" \
        -o "-c config_file=${CONFIG_FILE} -c hba_file=${HBA_FILE} -c listen_addresses='' -c unix_socket_directories=${RUN_DIR} -c synchronous_standby_names='' -c archive_mode=off -c log_statement=none" \
        start >&2 || { cat "${RUN_DIR}/init-server.log" >&2; die "could not start the new cluster"; }
    if ! psql -X -v ON_ERROR_STOP=1 -q -d postgres -v repl_user="$(replication_user)" >&2 <<SQL; then
\\set repl_password \`cat ${SECRET_DIR}/replication-password\`
CREATE ROLE :"repl_user" WITH LOGIN REPLICATION PASSWORD :'repl_password';
SQL
        pg_ctl -D "${stage}" -m fast -w stop >&2 || true
        die "could not create the replication role"
    fi
    pg_ctl -D "${stage}" -m fast -w -t 60 stop >&2 || die "could not stop the new cluster"
    rm -f "${RUN_DIR}/init-server.log"
    write_local_epoch 1 "${stage}"
}

clone() {
    local stage=$1 primary=$2 epoch=$3 host
    host=$(member_host "${primary}")
    log "cloning ${host} into ${PGDATA}"
    until pg_basebackup -D "${stage}" -d "$(replication_conninfo "${host}" "${POD_NAME}-clone")" \
        --wal-method=stream --checkpoint=fast --no-password >&2; do
        log "${host} does not answer yet; retrying in ${CLONE_RETRY_SECONDS}s"
        rm -rf "${stage}"
        sleep "${CLONE_RETRY_SECONDS}"
    done
    write_config_stub "${stage}"
    configure_standby "${stage}" "${primary}"
    write_local_epoch "${epoch}" "${stage}"
}

main() {
    local primary epoch stage
    write_pgpass
    if [[ -f "${PGDATA}/PG_VERSION" ]]; then
        log "data present in ${PGDATA} (system $(controldata_value "${PGDATA}" 'Database system identifier')); nothing to initialise"
        exit 0
    fi
    if [[ -e "${PGDATA}" ]] && [[ -n "$(ls -A "${PGDATA}")" ]]; then
        die "${PGDATA} is not empty but holds no PostgreSQL data directory; refusing to touch it"
    fi
    primary=$(record_primary)
    epoch=$(record_epoch)
    stage=$(staging_dir)
    rm -rf "${stage}"
    mkdir -p "$(dirname "${PGDATA}")"
    if [[ "${primary}" == "${POD_NAME}" ]]; then
        if [[ "${epoch}" != 1 ]]; then
            die "this member is the recorded primary (epoch ${epoch}) but has no data: a primary is never re-created empty; fail over to a member with data"
        fi
        refuse_if_cluster_exists
        initialise "${stage}"
    else
        clone "${stage}" "${primary}" "${epoch}"
    fi
    rmdir "${PGDATA}" 2>/dev/null || true
    mv "${stage}" "${PGDATA}"
    chmod 0700 "${PGDATA}"
    log "data ready in ${PGDATA}"
}

main "$@"
