# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the render playbook over the scenarios, and reading what it wrote."""

from __future__ import annotations

import base64
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent
ROLE = REPO / "roles" / "pg_cluster"


def ansible_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / ".collections")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return env


@dataclass
class Render:
    """One ansible-playbook run over all scenarios."""

    root: pathlib.Path
    inventory: pathlib.Path
    returncode: int
    stdout: str
    stderr: str

    def dir(self, scenario: str) -> pathlib.Path:
        return self.root / scenario


@dataclass
class Manifests:
    """The rendered files of one scenario, parsed."""

    scenario: str
    dir: pathlib.Path
    files: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)

    @property
    def objects(self) -> List[Dict[str, Any]]:
        return [obj for objs in self.files.values() for obj in objs]

    def get(self, kind: str, name: str) -> Dict[str, Any]:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.scenario}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def passwords(self) -> List[str]:
        secret = [o for o in self.files["10-secret.yaml"] if o["kind"] == "Secret"][0]
        return [base64.b64decode(value).decode() for value in secret["data"].values()]


def run_playbook(root: pathlib.Path, scenarios: Dict[str, Dict[str, Any]], *extra: str) -> subprocess.CompletedProcess:
    hosts = {}
    for name, variables in scenarios.items():
        hosts[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "pg_cluster_manifest_dir": str(root / name),
            **variables,
        }
    inventory = root / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"scenarios": {"hosts": hosts}}}}))
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "--forks", str(len(hosts)), *extra, str(REPO / "tests" / "manifests" / "render.yml")],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def iter_scripts() -> Iterator[pathlib.Path]:
    yield from sorted((ROLE / "files" / "scripts").glob("*.sh"))
