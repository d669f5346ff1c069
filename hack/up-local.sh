#!/usr/bin/env bash
# `make up-local`: the whole system without Docker. Starts the local pod runtime of tests/localpods
# (its own Kubernetes API server on a loopback address, pods as processes running Debian's
# PostgreSQL 15 binaries), deploys the cluster into it with site.yml through that API, waits until
# two standbys stream, and prints the kubeconfig's path as its last line. Needs root (pods are
# namespaces and cgroups) and the PostgreSQL 15 server binaries (make system-deps installs them).
# `make down-local` removes it again.
set -euo pipefail
cd "$(dirname "$0")/.."
state_file=.localpods-state
if [ "$(id -u)" -ne 0 ]; then
  echo "make up-local: the local pod runtime needs root (its pods are Linux namespaces and cgroups); run it as root." >&2
  exit 1
fi
if [ -f "$state_file" ] && [ -d "$(cat "$state_file")" ]; then
  echo "make up-local: a local runtime is up already in $(cat "$state_file"); run make down-local first." >&2
  exit 1
fi
state_dir=$(.venv/bin/python tests/localpods/cli.py up --empty --home-namespace postgres)
echo "$state_dir" > "$state_file"
kubeconfig="$state_dir/kubeconfig"
.venv/bin/ansible-playbook site.yml -e pg_cluster_target=existing -e "pg_cluster_kubeconfig=$kubeconfig" "$@"
.venv/bin/ansible-playbook playbooks/status.yml -e "pg_status_kubeconfig=$kubeconfig" \
  -e pg_status_min_streaming=2 -e pg_status_fail_unhealthy=true
echo "The cluster runs in the local pod runtime; use it with: kubectl --kubeconfig $kubeconfig -n postgres get pods"
echo "$kubeconfig"
