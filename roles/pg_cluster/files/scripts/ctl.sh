#!/usr/bin/env bash
# Operator entry points, run by the modules through pod exec in the postgres container:
#   ctl.sh state | hold | release | checkpoint | stop [TIMEOUT] | replayed TIMEOUT [LSN]
#          | promote EPOCH [TIMEOUT [TOLD_WITHIN]] | follow PRIMARY EPOCH [WAIT [TOLD_WITHIN]]
# Every verb is idempotent and prints one JSON object on stdout; it exits non-zero with a one-line
# reason on stderr when it refuses:
#   1 refused or failed, 2 usage, 3 not running and not held (the supervisor is (re)starting it:
#   start-up rule 3 configures it from the record), 4 wrong role for the verb, 6 an armed
#   verb that was not told to go (nothing changed).
# Nothing here decides whom to promote or follow: the module does, and writes the record.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly PSQL_TIMEOUT_MS=${CTL_STATEMENT_TIMEOUT_MS:-20000}

refuse() {
    local rc=$1
    shift
    log "$*"
    exit "${rc}"
}

json_string() {
    local value=$1
    value=${value//\\/\\\\}
    value=${value//\"/\\\"}
    value=${value//$'\n'/\\n}
    value=${value//$'\t'/\\t}
    printf '"%s"' "${value}"
}

json_bool() {
    if [[ "$1" == 1 ]]; then printf true; else printf false; fi
}

# JSON number or null.
json_int() {
    if [[ "$1" =~ ^[0-9]+$ ]]; then printf '%s' "$1"; else printf null; fi
}

# One statement over the local socket as the container user (peer authentication).
sql() {
    PGOPTIONS="-c statement_timeout=${PSQL_TIMEOUT_MS}" \
        psql -X -A -t -q -v ON_ERROR_STOP=1 -d "dbname=postgres connect_timeout=5 application_name=dbonk8s-ctl" -c "$1"
}

is_running() {
    pg_ctl status -D "${PGDATA}" >/dev/null 2>&1
}

is_accepting() {
    pg_isready -q -t 3 >/dev/null 2>&1
}

is_held() {
    [[ -e "${HOLD_FILE}" ]]
}

in_recovery() {
    [[ "$(sql 'SELECT pg_is_in_recovery()')" == t ]]
}

controldata_json() {
    local state lsn tli
    read_controldata
    state=$(controldata_field 'Database cluster state')
    lsn=$(controldata_field 'Latest checkpoint location')
    tli=$(controldata_field "Latest checkpoint's TimeLineID")
    printf '{"state":%s,"checkpoint_lsn":%s,"timeline":%s}' \
        "$(json_string "${state}")" "$(json_string "${lsn}")" "$(json_int "${tli}")"
}

# What a running server says about itself, as JSON members (no braces), to append to an object.
readonly SERVER_SQL="SELECT trim(both '{}' from json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'timeline', CASE WHEN pg_is_in_recovery()
      THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (pg_control_checkpoint()).timeline_id)
      ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  'current_lsn', CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END,
  'receive_lsn', pg_last_wal_receive_lsn()::text,
  'replay_lsn', pg_last_wal_replay_lsn()::text,
  'replay_paused', CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
  'wal_receiver', (SELECT status FROM pg_stat_wal_receiver),
  'primary_conninfo_host', substring(current_setting('primary_conninfo') from 'host=([^ ]+)'),
  'synchronous_standby_names', current_setting('synchronous_standby_names')
)::text)"

state_json() {
    local running=0 accepting=0 held=0 standby=0 phase server=''
    is_running && running=1
    is_held && held=1
    [[ -f "${PGDATA}/standby.signal" ]] && standby=1
    phase=$(cat "${PHASE_FILE}" 2>/dev/null || true)
    if [[ "${running}" == 1 ]] && is_accepting; then
        accepting=1
        server=$(sql "${SERVER_SQL}" 2>/dev/null || true)
    fi
    printf '{"pod":%s,"running":%s,"accepting":%s,"hold":%s,"phase":%s,"epoch":%s,"standby_signal":%s,"controldata":%s' \
        "$(json_string "${POD_NAME}")" "$(json_bool "${running}")" "$(json_bool "${accepting}")" "$(json_bool "${held}")" \
        "$(json_string "${phase}")" "$(local_epoch)" "$(json_bool "${standby}")" "$(controldata_json)"
    if [[ -n "${server}" ]]; then
        printf ',%s}\n' "${server}"
    else
        printf ',"in_recovery":null}\n'
    fi
}

# Sleeps SECONDS without starting a process: a read that times out on a pipe nobody writes to.
# Waits poll often, and on two busy cores a fork per look would slow the very shutdown or
# promotion that is being waited for.
NAP_FD=''
nap() {
    [[ -n "${NAP_FD}" ]] || exec {NAP_FD}<> <(:)
    read -r -t "$1" -u "${NAP_FD}" _ || true
}

# Polls a condition (a function name) every INTERVAL seconds (default 0.01) until it holds or
# TIMEOUT seconds pass.
wait_until() {
    local timeout=$1 check=$2 interval=${3:-0.01} deadline
    deadline=$((SECONDS + timeout))
    until "${check}"; do
        ((SECONDS < deadline)) || return 1
        nap "${interval}"
    done
}

# Waits inside one session rather than one psql per look (a connection costs more than a look).
# ANSWER_SQL is an SQL expression answering 'no' (keep waiting) or anything else (stop); between
# looks the transaction ends, so that the session holds no snapshot that could delay replay on a
# standby. Prints the last answer, or 'timeout' after TIMEOUT seconds. Extra psql arguments
# (e.g. -d CONNINFO) follow; the connection must not be refused for the answer to count. With
# WAIT_THEN_SQL set, its one-line answer follows on a second line (same session, no new connection).
WAIT_THEN_SQL=''
wait_in_session() {
    local timeout=$1 answer_sql=$2
    shift 2
    PGOPTIONS="${PGOPTIONS:-} -c statement_timeout=$(((timeout + 5) * 1000))" \
        psql -X -A -t -q -v ON_ERROR_STOP=1 -v timeout="${timeout}" "$@" < <(wait_script "${answer_sql}")
}

# The script of wait_in_session (psql variable :timeout set by the caller).
wait_script() {
    local answer_sql=$1
    cat <<EOSQL
SELECT set_config('dbonk8s.wait_seconds', :'timeout', false) \\g /dev/null
DO \$wait\$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => current_setting('dbonk8s.wait_seconds')::int);
    answer text;
BEGIN
    LOOP
        answer := (${answer_sql});
        EXIT WHEN answer IS DISTINCT FROM 'no';
        IF clock_timestamp() > deadline THEN
            answer := 'timeout';
            EXIT;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.005);
    END LOOP;
    PERFORM set_config('dbonk8s.wait_answer', answer, false);
END
\$wait\$;
SELECT current_setting('dbonk8s.wait_answer');
${WAIT_THEN_SQL:+${WAIT_THEN_SQL};}
EOSQL
}

# pg_controldata once, then its fields: "Key: value" lines.
CONTROLDATA=''
read_controldata() {
    CONTROLDATA=$(LC_ALL=C pg_controldata -D "${PGDATA}" 2>/dev/null || true)
}
controldata_field() {
    local key=$1 line
    while IFS= read -r line; do
        if [[ "${line}" == "${key}:"* ]]; then
            line=${line#"${key}:"}
            printf '%s' "${line#"${line%%[![:space:]]*}"}"
            return 0
        fi
    done <<<"${CONTROLDATA}"
}

stopped() {
    [[ ! -f "${PGDATA}/postmaster.pid" ]]
}

cmd_hold() {
    local changed=1
    is_held && changed=0
    : >"${HOLD_FILE}"
    printf '{"hold":true,"changed":%s}\n' "$(json_bool "${changed}")"
}

cmd_release() {
    local changed=0
    is_held && changed=1
    rm -f "${HOLD_FILE}"
    printf '{"hold":false,"changed":%s}\n' "$(json_bool "${changed}")"
}

cmd_checkpoint() {
    is_accepting || refuse 3 "PostgreSQL is not accepting connections"
    sql 'CHECKPOINT' >/dev/null
    printf '{"checkpoint_lsn":%s}\n' "$(json_string "$(controldata_value "${PGDATA}" 'Latest checkpoint location')")"
}

# Hold first, so that the supervisor waits instead of ending the container when postgres exits.
cmd_stop() {
    local timeout=${1:-60} changed=0 state
    [[ "${timeout}" =~ ^[0-9]+$ ]] || refuse 2 "usage: ctl.sh stop [TIMEOUT_SECONDS]"
    : >"${HOLD_FILE}"
    if is_running; then
        changed=1
        # Fast: sessions are ended and their open transactions rolled back; walsenders send the
        # standbys everything up to the shutdown checkpoint and wait for them before exiting.
        # pg_ctl -w looks every 100 ms; writes are paused until the stop is seen: look every 2 ms
        # (a file test, no process).
        pg_ctl stop -D "${PGDATA}" -m fast -W >/dev/null || refuse 1 "pg_ctl stop failed (it is still held)"
        wait_until "${timeout}" stopped 0.002 || refuse 1 "PostgreSQL did not stop within ${timeout}s (it is still held)"
    fi
    read_controldata
    state=$(controldata_field 'Database cluster state')
    case "${state}" in
        'shut down' | 'shut down in recovery') ;;
        *) refuse 1 "PostgreSQL is not running but its cluster state is '${state}', not a clean shutdown (it is still held)" ;;
    esac
    printf '{"stopped":true,"changed":%s,"hold":true,"checkpoint_lsn":%s,"timeline":%s,"cluster_state":%s}\n' \
        "$(json_bool "${changed}")" \
        "$(json_string "$(controldata_field 'Latest checkpoint location')")" \
        "$(json_int "$(controldata_field "Latest checkpoint's TimeLineID")")" \
        "$(json_string "${state}")"
}

# Armed verbs (promote, follow with TOLD_WITHIN) prepare, then wait for the line "go" on stdin
# before they change anything. Any other line, end of input or TOLD_WITHIN seconds without a line:
# nothing was changed (exit 6).
await_go() {
    local told_within=$1 line=''
    if ! read -r -t "${told_within}" line || [[ "${line}" != go ]]; then
        refuse 6 "not told to go (${line:-no line}): nothing changed"
    fi
}

# Asks for the promotion and waits for its end in one session, looking every 5 ms, then describes
# the server in the same session: pg_promote(wait => true) looks only every 100 ms, and each psql
# started costs a connection while writes are paused. 'already': it was not in recovery.
readonly PROMOTE_SQL="CASE WHEN NOT pg_is_in_recovery() THEN
    CASE WHEN current_setting('dbonk8s.asked', true) IS NULL THEN 'already' ELSE 'promoted' END
  WHEN current_setting('dbonk8s.asked', true) IS NULL THEN
    CASE WHEN set_config('dbonk8s.asked', 'yes', false) = 'yes' AND pg_promote(false) THEN 'no' ELSE 'refused' END
  ELSE 'no' END"

# With TOLD_WITHIN, everything but the promotion itself is done first (checks, the session opened)
# and the promotion waits for "go" (await_go): the module starts this while the old primary shuts
# down and says "go" once the record names this member, so that neither an exec nor a connection
# stands between the record and the promotion.
cmd_promote() {
    local epoch=${1:-} timeout=${2:-60} told_within=${3:-} mine changed=0 output rc=0 line session_in
    [[ "${epoch}" =~ ^[0-9]+$ && "${timeout}" =~ ^[0-9]+$ && "${told_within}" =~ ^[0-9]*$ ]] \
        || refuse 2 "usage: ctl.sh promote EPOCH [TIMEOUT_SECONDS [TOLD_WITHIN_SECONDS]]"
    is_accepting || refuse 3 "PostgreSQL is not accepting connections: cannot promote"
    mine=$(local_epoch)
    (( mine <= epoch )) || refuse 1 "this member is configured for epoch ${mine}, newer than ${epoch}: refusing a stale promotion"
    if [[ -z "${told_within}" ]]; then
        # The epoch first: a member that promoted and then restarts must not obey an older record
        # and turn back into a standby of the old primary (start-up rule 2).
        write_local_epoch "${epoch}"
        output=$(WAIT_THEN_SQL=${SERVER_SQL} wait_in_session "${timeout}" "${PROMOTE_SQL}" \
            -d "dbname=postgres connect_timeout=5 application_name=dbonk8s-ctl") || rc=$?
    else
        coproc PROMOTE_SESSION {
            PGOPTIONS="-c statement_timeout=$(((timeout + 5) * 1000))" \
                psql -X -A -t -q -v ON_ERROR_STOP=1 -v timeout="${timeout}" -d "dbname=postgres connect_timeout=5 application_name=dbonk8s-ctl"
        }
        printf '%s\n' "SELECT 'connected';" >&"${PROMOTE_SESSION[1]}"
        read -r -t 10 -u "${PROMOTE_SESSION[0]}" line && [[ "${line}" == connected ]] \
            || refuse 1 "could not open a session to promote in"
        await_go "${told_within}"
        write_local_epoch "${epoch}"
        WAIT_THEN_SQL=${SERVER_SQL} wait_script "${PROMOTE_SQL}" >&"${PROMOTE_SESSION[1]}"
        session_in=${PROMOTE_SESSION[1]}
        exec {session_in}>&-
        output=$(cat <&"${PROMOTE_SESSION[0]}")
        wait "${PROMOTE_SESSION_PID}" || rc=$?
    fi
    ((rc == 0)) || refuse 1 "promotion failed (psql exited ${rc})"
    case "${output%%$'\n'*}" in
        already) ;;
        promoted) changed=1 ;;
        refused) refuse 1 "pg_promote() refused" ;;
        *) refuse 1 "not promoted within ${timeout}s (the promotion may still complete)" ;;
    esac
    printf '{"changed":%s,"epoch":%s,%s}\n' "$(json_bool "${changed}")" "${epoch}" "${output#*$'\n'}"
}

# A standby has replayed past LSN (the end of the record that starts there), or, without LSN,
# everything its upstream sent before the upstream went away (the walreceiver is not streaming and
# replay caught up with what was received). The module runs the second form while the old
# primary shuts down, then compares with the shutdown checkpoint, so that both waits overlap.
readonly REPLAY_SQL="CASE WHEN NOT pg_is_in_recovery() THEN 'primary'
  WHEN current_setting('dbonk8s.lsn') <> '' THEN
    CASE WHEN pg_last_wal_replay_lsn() > current_setting('dbonk8s.lsn')::pg_lsn THEN 'yes' ELSE 'no' END
  WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
       AND pg_last_wal_replay_lsn() >= coalesce(pg_last_wal_receive_lsn(), '0/0') THEN 'yes'
  ELSE 'no' END"

cmd_replayed() {
    local timeout=${1:-} lsn=${2:-} answer rc=0
    [[ "${timeout}" =~ ^[0-9]+$ ]] || refuse 2 "usage: ctl.sh replayed TIMEOUT [LSN]"
    [[ -z "${lsn}" || "${lsn}" =~ ^[0-9A-Fa-f]+/[0-9A-Fa-f]+$ ]] || refuse 2 "not an LSN: ${lsn}"
    is_accepting || refuse 3 "PostgreSQL is not accepting connections"
    # The LSN reaches the loop as a session setting (it was checked above to be an LSN).
    answer=$(PGOPTIONS="-c dbonk8s.lsn=${lsn}" wait_in_session "${timeout}" "${REPLAY_SQL}" \
        -d "dbname=postgres connect_timeout=5 application_name=dbonk8s-ctl") || rc=$?
    ((rc == 0)) || refuse 1 "could not watch replay (psql exited ${rc})"
    case "${answer}" in
        yes) ;;
        primary) refuse 4 "this member is not a standby" ;;
        *) refuse 5 "not replayed within ${timeout}s${lsn:+ past ${lsn}}: $(sql "SELECT 'replayed ' || pg_last_wal_replay_lsn() || ', received ' || coalesce(pg_last_wal_receive_lsn()::text, 'nothing')")" ;;
    esac
    printf '{%s}\n' "$(sql "${SERVER_SQL}")"
}

# Until the new primary answers out of recovery (over TCP, as the superuser, like pg_rewind): one
# session that looks every 5 ms, opened again while the member does not accept connections.
wait_promoted() {
    local host=$1 wait=$2 deadline answer
    deadline=$((SECONDS + wait))
    while ((SECONDS < deadline)); do
        answer=$(wait_in_session $((deadline - SECONDS + 1)) "CASE WHEN pg_is_in_recovery() THEN 'no' ELSE 'yes' END" \
            -d "host=${host} port=${PGPORT} user=${PGUSER} dbname=postgres passfile=${PASSFILE} connect_timeout=2 application_name=dbonk8s-ctl" 2>/dev/null) || answer=''
        [[ "${answer}" == yes ]] && return 0
        nap 0.05
    done
    return 1
}

cmd_follow() {
    local primary=${1:-} epoch=${2:-} wait=${3:-0} told_within=${4:-} host want current changed=0 mode rewound=no mine
    [[ -n "${primary}" && "${epoch}" =~ ^[0-9]+$ && "${wait}" =~ ^[0-9]+$ && "${told_within}" =~ ^[0-9]*$ ]] \
        || refuse 2 "usage: ctl.sh follow PRIMARY EPOCH [WAIT_SECONDS [TOLD_WITHIN_SECONDS]]"
    [[ "${primary}" != "${POD_NAME}" ]] || refuse 2 "a member cannot follow itself"
    mine=$(local_epoch)
    (( mine <= epoch )) || refuse 1 "this member is configured for epoch ${mine}, newer than ${epoch}: refusing a stale repoint"
    host=$(member_host "${primary}")
    want=$(replication_conninfo "${host}")
    if (( wait > 0 )); then
        # The module may start this while the promotion runs, so that the two exec round trips
        # overlap, and have the standby follow a primary, never a standby that may fail to promote.
        wait_promoted "${host}" "${wait}" || refuse 1 "${primary} did not come out of recovery within ${wait}s"
    fi
    if is_running; then
        is_accepting || refuse 3 "PostgreSQL is running but not accepting connections yet; retry"
        # One round trip: true or false, a newline, then the conninfo (which has no newline).
        current=$(sql "SELECT pg_is_in_recovery()::text || E'\\n' || current_setting('primary_conninfo')")
        [[ "${current%%$'\n'*}" == true ]] || refuse 4 "this member runs as a primary: stop it first (ctl.sh stop)"
        current=${current#*$'\n'}
        mode=reload
        # Armed (the module says "go" once the record names the new primary): the reload then
        # makes this a cascading standby of the candidate during its promotion; it crosses to the
        # new timeline on the same connection.
        [[ -z "${told_within}" ]] || await_go "${told_within}"
        if [[ "${current}" != "${want}" ]]; then
            changed=1
            # Since PostgreSQL 13 a reload restarts the walreceiver with the new conninfo: no restart.
            PGOPTIONS="-c statement_timeout=${PSQL_TIMEOUT_MS}" \
                psql -X -A -t -q -v ON_ERROR_STOP=1 -d "dbname=postgres connect_timeout=5 application_name=dbonk8s-ctl" \
                -c "ALTER SYSTEM SET primary_conninfo = '${want//\'/\'\'}'" -c 'SELECT pg_reload_conf()' >/dev/null
        fi
    else
        [[ -z "${told_within}" ]] || refuse 3 "PostgreSQL is not running: only a running standby can be armed to follow"
        is_held || refuse 3 "PostgreSQL is not running and not held: the supervisor is starting it, and start-up follows the record"
        mode=stopped
        changed=1
        # A former primary, or a standby that received WAL past the new timeline's fork (after a
        # forced failover), must never start without a rewind check; pg_rewind returns at once
        # when the member's WAL ends before the fork.
        rewound=$(rewind_from "${host}") || {
            configure_standby "${PGDATA}" "${primary}"
            write_local_epoch "${epoch}"
            refuse 1 "pg_rewind against ${host} failed; the member stays held, configured as a standby (release it to let start-up clone it afresh)"
        }
        configure_standby "${PGDATA}" "${primary}"
    fi
    (( mine == epoch )) || changed=1
    write_local_epoch "${epoch}"
    printf '{"changed":%s,"mode":%s,"primary":%s,"epoch":%s,"rewound":%s}\n' "$(json_bool "${changed}")" "$(json_string "${mode}")" \
        "$(json_string "${primary}")" "${epoch}" "$(json_bool "$([[ "${rewound}" == yes ]] && echo 1 || echo 0)")"
}

main() {
    local verb=${1:-}
    shift || true
    case "${verb}" in
        state) state_json ;;
        hold) cmd_hold ;;
        release) cmd_release ;;
        checkpoint) cmd_checkpoint ;;
        stop) cmd_stop "$@" ;;
        replayed) cmd_replayed "$@" ;;
        promote) cmd_promote "$@" ;;
        follow) cmd_follow "$@" ;;
        *) refuse 2 "usage: ctl.sh state|hold|release|checkpoint|stop [TIMEOUT]|replayed TIMEOUT [LSN]|promote EPOCH [TIMEOUT [TOLD_WITHIN]]|follow PRIMARY EPOCH [WAIT [TOLD_WITHIN]]" ;;
    esac
}

main "$@"
