#!/usr/bin/env bash
# Runs each test suite (a make target) in turn and prints the minutes each took, then a summary;
# stops at the first suite that fails, after saying which.
set -uo pipefail
declare -a summary=()
status=0
for suite in "$@"; do
    started=$(date +%s)
    echo "=== suite ${suite}"
    make --no-print-directory "${suite}"
    rc=$?
    minutes=$(awk -v s="$(($(date +%s) - started))" 'BEGIN { printf "%.1f", s / 60 }')
    summary+=("$(printf '%-16s %5s min  %s' "${suite}" "${minutes}" "$([[ ${rc} == 0 ]] && echo ok || echo "FAILED (exit ${rc})")")")
    echo "=== suite ${suite}: ${minutes} min"
    if [[ ${rc} != 0 ]]; then
        status=${rc}
        break
    fi
done
echo "=== minutes per suite"
printf '%s\n' "${summary[@]}"
exit "${status}"
