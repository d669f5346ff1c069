# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ships in the collection depends on nothing of the test harness: no plugin imports from
``tests`` or reads the local pod runtime's state files, and the Kubernetes client is the modules' only
way to a cluster."""

from __future__ import annotations

import ast
import os

import pytest

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 3, "plugins")
SOURCES = sorted(os.path.join(root, name) for root, _dirs, names in os.walk(PLUGINS) for name in names if name.endswith(".py"))


def imported_modules(path: str) -> set[str]:
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_there_are_sources_to_check():
    assert any(path.endswith("_kube_backend.py") for path in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=[os.path.relpath(p, PLUGINS) for p in SOURCES])
def test_no_plugin_uses_the_test_harness(path):
    modules = imported_modules(path)
    assert not [m for m in modules if m == "tests" or m.startswith("tests.") or "localpods" in m]
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for marker in ("runtime.json", "control.sock", "exec_argv", "local_runtime_dir"):
        assert marker not in text, f"{path} mentions {marker}"
