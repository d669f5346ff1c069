# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renders every scenario once per test session, for real, and scans the result once.

The render is one ``ansible-playbook tests/manifests/render.yml`` run over an inventory with one
host per scenario (all local), so that the role's tasks run for all scenarios side by side in one
Ansible process instead of one process per scenario. checkov runs once over all scenario
directories and the guide's manifests, from its own virtualenv (hack/checkov-venv.sh).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from typing import Any, Dict, List

import pytest
import yaml

from manifest_render import REPO, Manifests, Render, run_playbook
from manifest_scenarios import SCENARIOS


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Render:
    root = tmp_path_factory.mktemp("manifests")
    # -v prints every task result: a password that leaks into a result would show up in stdout.
    result = run_playbook(root, SCENARIOS, "-v")
    rendered = Render(root, root / "inventory.yml", result.returncode, result.stdout, result.stderr)
    if result.returncode != 0:
        pytest.fail(f"the role's render-only run failed (rc={result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return rendered


@pytest.fixture(scope="session")
def manifests(render: Render) -> Dict[str, Manifests]:
    parsed = {}
    for scenario in SCENARIOS:
        directory = render.dir(scenario)
        m = Manifests(scenario, directory)
        for path in sorted(directory.glob("*.yaml")):
            m.files[path.name] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        parsed[scenario] = m
    return parsed


@pytest.fixture(scope="session")
def checkov() -> pathlib.Path:
    """checkov from .venv-checkov, created from requirements-checkov.txt when missing or stale."""
    result = subprocess.run([str(REPO / "hack" / "checkov-venv.sh")], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/checkov-venv.sh failed:\n{result.stderr[-4000:]}")
    return pathlib.Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def checkov_results(render: Render, checkov: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, List[Dict[str, Any]]]:
    """checkov's passed/failed/skipped checks over every scenario and the guide's manifests."""
    scan = tmp_path_factory.mktemp("checkov")
    for scenario in SCENARIOS:
        target = scan / scenario
        target.mkdir()
        for path in render.dir(scenario).glob("*.yaml"):
            (target / path.name).write_text(path.read_text())
    (scan / "guide").mkdir()
    (scan / "guide" / "guide.yaml").write_text((REPO / "tests" / "manifests" / "data" / "guide-manifests.txt").read_text())
    env = dict(os.environ)
    # Offline: no Prisma Cloud policy metadata (--skip-download) and no guideline mapping download.
    env["BC_SKIP_MAPPING"] = "TRUE"
    result = subprocess.run(
        [str(checkov), "--framework", "kubernetes", "--directory", str(scan), "--skip-download", "--output", "json", "--soft-fail"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=scan,
    )
    if result.returncode != 0:
        pytest.fail(f"checkov did not run (rc={result.returncode}):\n{result.stderr[-4000:]}")
    report = json.loads(result.stdout)
    results = report["results"]
    assert not results.get("parsing_errors"), f"checkov could not parse: {results['parsing_errors']}"
    return results
