#!/usr/bin/env bash
# `make down-local`: stops the local pod runtime that `make up-local` started and removes its state.
set -euo pipefail
cd "$(dirname "$0")/.."
state_file=.localpods-state
if [ ! -f "$state_file" ]; then
  echo "make down-local: no local runtime was started by make up-local here; nothing to do."
  exit 0
fi
state_dir=$(cat "$state_file")
if [ -d "$state_dir" ]; then
  .venv/bin/python tests/localpods/cli.py --state-dir "$state_dir" down
  rm -rf "$state_dir"
fi
rm -f "$state_file"
echo "make down-local: removed the local runtime in $state_dir"
