#!/usr/bin/env bash
# Probes of the main container: probe.sh ready|live|startup.
# - ready: PostgreSQL accepts connections in its role, and no module holds the member;
# - live/startup: the supervisor is preparing (rewind, clone, waiting for the primary) or held, or
#   postgres answers, even if only to reject connections while it starts or recovers: restarting a
#   member that is busy recovering would only start its recovery over.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

phase=$(cat "${PHASE_FILE}" 2>/dev/null || true)

postgres_answers() {
    local rc=0
    pg_isready -q -h "${PGHOST}" -p "${PGPORT}" -t 3 >/dev/null 2>&1 || rc=$?
    # 0: accepting, 1: rejecting (starting up, recovering), 2: no response, 3: no attempt.
    [[ "${rc}" == 0 || "${rc}" == 1 ]]
}

case "${1:-}" in
    ready)
        if [[ -e "${HOLD_FILE}" ]]; then
            log "held: not ready"
            exit 1
        fi
        [[ "${phase}" == running ]] || exit 1
        pg_isready -q -h "${PGHOST}" -p "${PGPORT}" -t 3 >/dev/null 2>&1
        ;;
    live | startup)
        case "${phase}" in
            preparing | held) exit 0 ;;
        esac
        [[ -e "${HOLD_FILE}" ]] && exit 0
        postgres_answers
        ;;
    *)
        log "usage: probe.sh ready|live|startup"
        exit 2
        ;;
esac
