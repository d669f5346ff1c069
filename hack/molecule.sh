#!/usr/bin/env bash
# Runs every molecule scenario this machine can run. The kind scenario needs a container engine
# (Docker or Podman) that answers; without one it is skipped with a message and the run still
# passes, since nothing on such a machine could create a kind cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

engine_answers() {
    local engine
    for engine in docker podman; do
        if command -v "$engine" >/dev/null 2>&1 && timeout 10 "$engine" info >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

for scenario_dir in molecule/*/; do
    scenario=$(basename "$scenario_dir")
    if [[ $scenario == kind ]] && ! engine_answers; then
        echo "molecule: skipping scenario kind: no container engine (Docker or Podman) answers on this machine, so kind cannot create a cluster."
        continue
    fi
    molecule test --scenario-name "$scenario"
done
