#!/usr/bin/env bash
# Make this checkout the installed dbonk8s.postgresql (a link, so edits are live) and make sure its
# collection dependency kubernetes.core is there: from Ansible Galaxy when it answers, otherwise
# the copy that the `ansible` package from PyPI ships in the virtualenv.
set -euo pipefail
collections=${1:?usage: install-collection.sh COLLECTIONS_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"

mkdir -p "$collections/ansible_collections/dbonk8s"
link="$collections/ansible_collections/dbonk8s/postgresql"
if [ "$(readlink "$link" 2>/dev/null)" != "$root" ]; then
  rm -rf "$link"
  ln -s "$root" "$link"
fi

shipped=$("$bin/python" - <<'PY'
import json, pathlib, ansible_collections
for base in ansible_collections.__path__:
    manifest = pathlib.Path(base, "kubernetes", "core", "MANIFEST.json")
    if manifest.is_file():
        print(json.loads(manifest.read_text())["collection_info"]["version"])
        break
PY
)
if [ -d "$collections/ansible_collections/kubernetes/core" ]; then
  exit 0
fi
# --force: a copy from the ansible package would otherwise satisfy the request and Galaxy would
# never be asked; when Galaxy answers, its copy in $collections takes precedence.
if timeout 60 "$bin/ansible-galaxy" collection install --force -r "$root/requirements.yml" -p "$collections" \
     >/dev/null 2>&1; then
  echo "kubernetes.core installed from Ansible Galaxy into $collections"
elif [ -n "$shipped" ]; then
  echo "Ansible Galaxy is unreachable: using kubernetes.core $shipped shipped by the ansible package from PyPI."
else
  echo "Neither Ansible Galaxy nor the ansible package provides kubernetes.core; install it and retry." >&2
  exit 1
fi
