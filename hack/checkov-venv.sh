#!/usr/bin/env bash
# Creates (or refreshes) .venv-checkov, a virtualenv with checkov only, from the pinned
# requirements-checkov.txt. checkov's dependency pins (packaging, among others) conflict with
# ansible-lint's, so it cannot live in .venv. Does nothing when the venv matches the requirements.
# Prints the path of the checkov executable.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv-checkov"
requirements="$root/requirements-checkov.txt"
stamp="$venv/.requirements.sha256"
python=${PYTHON:-python3}

# Two test runs may start at once: the second waits for the first to finish the venv.
exec 9<"$requirements"
flock 9

wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -x "$venv/bin/checkov" && -f "$stamp" && "$(<"$stamp")" == "$wanted" ]]; then
    echo "$venv/bin/checkov"
    exit 0
fi

echo "Creating $venv from requirements-checkov.txt (once; about a minute)" >&2
"$python" -m venv --clear "$venv"
# The requirements are the complete, pinned closure: --no-deps keeps pip from resolving anything
# else, and pip check proves the closure is consistent.
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements" >&2
"$venv/bin/pip" check --disable-pip-version-check >&2
echo "$wanted" >"$stamp"
echo "$venv/bin/checkov"
