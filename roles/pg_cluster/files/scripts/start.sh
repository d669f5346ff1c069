#!/usr/bin/env bash
# Main container: a small supervisor of postgres.
# Every time PostgreSQL is about to start, the record of the primary decides its role (see the
# contract in docs/architecture.md): a member never promotes itself here. SIGTERM becomes a fast
# shutdown. When postgres stops while /var/run/postgresql/hold exists, the supervisor waits for the
# hold to go and starts PostgreSQL again as the module that set it configured it on disk; any
# other exit of postgres ends the container with postgres's status, so that kubelet restarts it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly PRIMARY_WAIT_SECONDS=${PG_PRIMARY_WAIT_SECONDS:-2}
postgres_pid=''
terminating=0

set_phase() {
    printf '%s\n' "$1" >"${PHASE_FILE}.tmp"
    mv -f "${PHASE_FILE}.tmp" "${PHASE_FILE}"
}

on_term() {
    terminating=1
    if [[ -n "${postgres_pid}" ]]; then
        log "SIGTERM: fast shutdown of postgres (pid ${postgres_pid})"
        kill -INT "${postgres_pid}" 2>/dev/null || true
    else
        log "SIGTERM before postgres started: exiting"
        exit 0
    fi
}
trap on_term TERM INT

# Move diverged data aside (the one latest copy is kept, for an operator to recover transactions
# that the cluster lost), then clone the primary afresh.
reclone() {
    local primary=$1 epoch=$2 stage host
    host=$(member_host "${primary}")
    log "moving ${PGDATA} aside to ${PGDATA}${DIVERGED_SUFFIX} and cloning ${host} afresh"
    rm -rf "${PGDATA}${DIVERGED_SUFFIX}"
    mv "${PGDATA}" "${PGDATA}${DIVERGED_SUFFIX}"
    stage=$(staging_dir)
    rm -rf "${stage}"
    until pg_basebackup -D "${stage}" -d "$(replication_conninfo "${host}" "${POD_NAME}-clone")" \
        --wal-method=stream --checkpoint=fast --no-password >&2; do
        log "${host} does not answer; retrying in ${PRIMARY_WAIT_SECONDS}s"
        rm -rf "${stage}"
        sleep "${PRIMARY_WAIT_SECONDS}"
    done
    write_config_stub "${stage}"
    configure_standby "${stage}" "${primary}"
    write_local_epoch "${epoch}" "${stage}"
    mv "${stage}" "${PGDATA}"
}

# Rule 3, record names another member: follow it, rewinding first when this member may hold WAL
# the primary does not have.
become_standby_of() {
    local primary=$1 epoch=$2 host identity primary_sysid primary_tli local_sysid local_tli state was_standby=1 rewound
    host=$(member_host "${primary}")
    [[ -f "${PGDATA}/standby.signal" ]] || was_standby=0
    local_sysid=$(controldata_value "${PGDATA}" 'Database system identifier')
    local_tli=$(controldata_value "${PGDATA}" "Latest checkpoint's TimeLineID")
    state=$(controldata_value "${PGDATA}" 'Database cluster state')

    identity=$(identify_system "${host}" || true)
    while [[ -z "${identity}" ]]; do
        if [[ "${was_standby}" == 1 ]]; then
            # A standby that keeps following cannot diverge: start and let the walreceiver retry.
            log "recorded primary ${host} does not answer; starting as its standby anyway"
            configure_standby "${PGDATA}" "${primary}"
            write_local_epoch "${epoch}"
            return 0
        fi
        # A former primary must not run until it is rewound: it may hold transactions that the
        # new primary lacks, and serving them would split the cluster's history.
        log "this member was a primary; waiting for the recorded primary ${host} to rewind against it"
        sleep "${PRIMARY_WAIT_SECONDS}"
        identity=$(identify_system "${host}" || true)
    done
    primary_sysid=${identity%% *}
    primary_tli=${identity##* }
    if [[ "${primary_sysid}" != "${local_sysid}" ]]; then
        # Another database altogether: following it is impossible and throwing this one away is
        # an operator's decision, never a start-up script's.
        die "recorded primary ${host} is database system ${primary_sysid}, this member holds ${local_sysid}: refusing to start; delete this member's volume to clone it"
    fi

    if [[ "${was_standby}" == 0 || ( "${primary_tli}" != "${local_tli}" && "${state}" == 'shut down in recovery' ) ]]; then
        log "timeline ${local_tli} (${state}) against the primary's ${primary_tli}: pg_rewind decides whether this member diverged"
        if rewound=$(rewind_from "${host}"); then
            log "rewound: ${rewound}"
        else
            log "pg_rewind against ${host} failed"
            reclone "${primary}" "${epoch}"
            return 0
        fi
    fi
    configure_standby "${PGDATA}" "${primary}"
    write_local_epoch "${epoch}"
}

# Rules 2 and 3 of the contract.
prepare() {
    local primary epoch mine
    primary=$(record_primary)
    epoch=$(record_epoch)
    mine=$(local_epoch)
    [[ -f "${PGDATA}/PG_VERSION" ]] || die "${PGDATA} holds no data (the init container gives it some)"
    if (( mine > epoch )); then
        log "local epoch ${mine} is newer than the record's ${epoch} (not refreshed yet): starting as configured"
        return 0
    fi
    if [[ "${primary}" == "${POD_NAME}" ]]; then
        if [[ -f "${PGDATA}/standby.signal" ]]; then
            log "recorded primary (epoch ${epoch}) but configured as a standby: starting as a standby, only a module promotes"
        else
            log "recorded primary (epoch ${epoch}): starting as primary"
            set_auto_conf "${PGDATA}" primary_conninfo ''
        fi
        write_local_epoch "${epoch}"
        return 0
    fi
    log "standby of ${primary} (epoch ${epoch})"
    become_standby_of "${primary}" "${epoch}"
}

# A member that answers as a primary: "epoch" of its data directory, or nothing (and a non-zero
# status) when it does not answer or is a standby.
primary_epoch_of() {
    local member=$1 answer
    answer=$(psql -X -A -t -F ' ' \
        -d "host=$(member_host "${member}") port=${PGPORT} user=${PGUSER} dbname=postgres passfile=${PASSFILE} connect_timeout=2 options=-cstatement_timeout=3000 application_name=${POD_NAME}-fence" \
        -c "SELECT pg_is_in_recovery(), coalesce(nullif(btrim(pg_read_file('${EPOCH_FILE_NAME}', 0, 32, true), E' \\n'), ''), '0')" 2>/dev/null) || return 1
    [[ "${answer}" =~ ^f\ ([0-9]+)$ ]] || return 1
    printf '%s' "${BASH_REMATCH[1]}"
}

# Fencing against a stale view of the record. kubelet refreshes a mounted ConfigMap only every
# minute or so, and a container restarted meanwhile reads the record as it was: a primary replaced
# by a failover may still find its own name there. So before this member starts as a primary, it
# asks the other members at once; one running as a primary for a newer epoch than this member's
# is printed as "member epoch" (status 0). A primary of an older epoch is a former primary that
# was fenced off: it is only reported, since the record and the -rw Service name this member.
newer_primary() {
    local mine=$1 dir member epoch pids=() newer=''
    dir=$(mktemp -d "${RUN_DIR}/fence.XXXXXX")
    for member in $(config_value dbonk8s.members | tr ',' ' '); do
        [[ "${member}" == "${POD_NAME}" ]] && continue
        ( epoch=$(primary_epoch_of "${member}") && printf '%s\n' "${epoch}" >"${dir}/${member}" ) &
        pids+=("$!")
    done
    (( ${#pids[@]} == 0 )) || wait "${pids[@]}" || true
    for member in $(config_value dbonk8s.members | tr ',' ' '); do
        [[ -s "${dir}/${member}" ]] || continue
        epoch=$(cat "${dir}/${member}")
        if (( epoch > mine )); then
            newer="${member} ${epoch}"
        else
            log "WARNING: ${member} also runs as a primary, configured for epoch ${epoch} (this member: ${mine}); it is a former primary and must be stopped"
        fi
    done
    rm -rf "${dir}"
    [[ -n "${newer}" ]] || return 1
    printf '%s' "${newer}"
}

run_postgres() {
    local rc=0
    set_phase running
    postgres -D "${PGDATA}" -c "config_file=${CONFIG_FILE}" -c "hba_file=${HBA_FILE}" \
        -c "listen_addresses=${PG_LISTEN_ADDRESSES:-*}" &
    postgres_pid=$!
    # wait returns early when a trapped signal arrives: wait again until postgres is gone.
    while :; do
        wait "${postgres_pid}" && rc=0 || rc=$?
        kill -0 "${postgres_pid}" 2>/dev/null || break
    done
    postgres_pid=''
    return "${rc}"
}

main() {
    local rc after_hold=0 newer
    write_pgpass
    while :; do
        if [[ -e "${HOLD_FILE}" ]]; then
            set_phase held
            log "held (${HOLD_FILE}): waiting for the hold to be removed"
            while [[ -e "${HOLD_FILE}" ]]; do
                [[ "${terminating}" == 1 ]] && exit 0
                sleep 0.2
            done
            after_hold=1
        fi
        set_phase preparing
        if [[ "${after_hold}" == 1 ]]; then
            log "hold removed: starting as configured on disk"
        else
            prepare
        fi
        after_hold=0
        [[ "${terminating}" == 1 ]] && exit 0
        if [[ ! -f "${PGDATA}/standby.signal" ]] && newer=$(newer_primary "$(local_epoch)"); then
            log "${newer%% *} runs as the primary of epoch ${newer##* }, newer than the record seen here (primary $(record_primary), epoch $(record_epoch)): not starting as a second primary; reading the record again in ${PRIMARY_WAIT_SECONDS}s"
            sleep "${PRIMARY_WAIT_SECONDS}"
            continue
        fi
        rc=0
        run_postgres || rc=$?
        if [[ "${terminating}" == 1 ]]; then
            log "postgres stopped (status ${rc}) after SIGTERM"
            exit 0
        fi
        if [[ -e "${HOLD_FILE}" ]]; then
            log "postgres stopped (status ${rc}) while held"
            continue
        fi
        log "postgres exited unexpectedly with status ${rc}"
        exit "${rc}"
    done
}

main "$@"
