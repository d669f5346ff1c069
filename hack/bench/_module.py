"""One module of the collection run through ansible-playbook, as users run it, for the benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_module(module: str, args: dict, scratch: str) -> dict:
    """Runs ``dbonk8s.postgresql.<module>`` with ``args`` in a one-task playbook; returns its
    registered result (a failure is a result with ``failed``, not an exception)."""
    result_file = os.path.join(scratch, f"result-{time.monotonic_ns()}.json")
    playbook = os.path.join(scratch, f"{module}.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        json.dump(
            [
                {
                    "name": "bench",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {"name": module, f"dbonk8s.postgresql.{module}": args, "register": "out", "ignore_errors": True},
                        {"name": "Save", "ansible.builtin.copy": {"content": "{{ out | to_json }}", "dest": result_file, "mode": "0600"}},
                    ],
                }
            ],
            handle,
        )
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO_ROOT, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO_ROOT, ".collections"))
    subprocess.run(["ansible-playbook", playbook], cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=600)
    with open(result_file, encoding="utf-8") as handle:
        return json.load(handle)
