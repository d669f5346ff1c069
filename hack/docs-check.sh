#!/usr/bin/env bash
# Documentation gate run by `make test` (`make docs-check`): ansible-doc must list and render every
# module in plugins/modules and every filter in plugins/filter of the installed collection, each
# with a short description, examples and return values. A plugin without docs, with docs that do not
# parse, or that ansible-doc cannot load at all fails the check with the plugin's name.
#
# Needs the collection on ANSIBLE_COLLECTIONS_PATH (`make collection`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
PATH="$(dirname "$python"):$PATH"
export PATH
export ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$root/ansible.cfg}
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$root/.collections}

exec "$python" - "$root" <<'PY'
import json
import pathlib
import subprocess
import sys

import yaml

COLLECTION = "dbonk8s.postgresql"
root = pathlib.Path(sys.argv[1])
problems: list[str] = []


def ansible_doc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ansible-doc", *args], capture_output=True, text=True, check=False)


def listed(plugin_type: str) -> dict[str, str]:
    """Plugins of this collection that ansible-doc can find, with their short descriptions."""
    result = ansible_doc("-t", plugin_type, "-l", "--json", COLLECTION)
    if result.returncode != 0:
        problems.append(f"ansible-doc -t {plugin_type} -l {COLLECTION} failed: {result.stderr.strip()}")
        return {}
    return json.loads(result.stdout or "{}")


def expected_modules() -> set[str]:
    return {f"{COLLECTION}.{p.stem}" for p in (root / "plugins/modules").glob("*.py") if p.stem != "__init__"}


def expected_filters() -> set[str]:
    """Filters named by the doc sidecars; filters without a sidecar come from ansible-doc's list."""
    names = set()
    for sidecar in (root / "plugins/filter").glob("*.y*ml"):
        doc = yaml.safe_load(sidecar.read_text()) or {}
        name = (doc.get("DOCUMENTATION") or {}).get("name") or sidecar.stem
        names.add(f"{COLLECTION}.{name}")
    return names


def check(plugin_type: str, expected: set[str]) -> int:
    found = listed(plugin_type)
    for name in sorted(expected - found.keys()):
        problems.append(f"{plugin_type} {name}: has a file in plugins/ but ansible-doc does not list it "
                        f"(it does not load; try `ansible-doc -t {plugin_type} {name}`)")
    names = sorted(expected | found.keys())
    for name in names:
        if found.get(name, "").strip() in ("", "UNDOCUMENTED"):
            problems.append(f"{plugin_type} {name}: no short description (undocumented?)")
    if not names:
        return 0

    # Rendered as a user would see it: any error in the docs (bad markup, broken fragment) shows here.
    rendered = ansible_doc("-t", plugin_type, *names)
    if rendered.returncode != 0:
        for name in names:
            single = ansible_doc("-t", plugin_type, name)
            if single.returncode != 0:
                problems.append(f"{plugin_type} {name}: ansible-doc fails: {single.stderr.strip()}")

    as_json = ansible_doc("-t", plugin_type, "--json", *names)
    docs = json.loads(as_json.stdout or "{}") if as_json.returncode == 0 else {}
    for name in names:
        entry = docs.get(name)
        if not entry:
            continue  # reported above
        doc = entry.get("doc") or {}
        for key in ("short_description", "description", "author"):
            if not doc.get(key):
                problems.append(f"{plugin_type} {name}: DOCUMENTATION has no {key}")
        if not (entry.get("examples") or "").strip():
            problems.append(f"{plugin_type} {name}: no EXAMPLES")
        if not entry.get("return"):
            problems.append(f"{plugin_type} {name}: no RETURN")
    return len(names)


count = check("module", expected_modules()) + check("filter", expected_filters())
if problems:
    print(f"docs-check: {len(problems)} problem(s):", *problems, sep="\n  ")
    sys.exit(1)
print(f"docs-check: ansible-doc lists and renders all {count} modules and filters of {COLLECTION}")
PY
