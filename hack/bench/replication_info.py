#!/usr/bin/env python
"""Benchmark: time of pg_replication_info on clusters of 3 and 5 members of the local pod runtime.

For each size, prints the median of N runs of:
- collect: the status itself, in-process (one exec + one query per member, in parallel);
- module: the module as Ansible runs it (a Python process reading its arguments from a file),
  which adds interpreter start-up and imports.
Figures only; nothing is asserted about time.

  hack/bench/replication_info.py [--manifests-3 DIR] [--manifests-5 DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO_ROOT, ".collections")
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, COLLECTIONS)

from tests.localpods.fixtures import LocalPods, render_manifests  # noqa: E402

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import StatefulSetMembers, backend_from_params  # noqa: E402
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._replication import collect  # noqa: E402

MODULE = os.path.join(REPO_ROOT, "plugins", "modules", "pg_replication_info.py")


def wait_streaming(runtime: LocalPods, standbys: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        result = runtime.exec("postgres-0", "psql", "-X", "-A", "-t", "-d", "postgres", "-c", sql, check=False)
        if result.returncode == 0 and result.stdout.strip() == str(standbys):
            return
        time.sleep(0.2)
    raise SystemExit(f"{standbys} standbys are not streaming after {timeout}s")


def time_collect(runtime_dir: str) -> float:
    backend = backend_from_params({"kubeconfig": os.path.join(runtime_dir, "kubeconfig")})
    started = time.monotonic()
    state = collect(backend, StatefulSetMembers(statefulset="postgres"), 15)
    elapsed = time.monotonic() - started
    if not state["cluster"]["healthy"]:
        raise SystemExit("cluster not healthy: " + "; ".join(state["cluster"]["reasons"]))
    return elapsed


def time_module(runtime_dir: str, scratch: str) -> float:
    args_file = os.path.join(scratch, "args.json")
    with open(args_file, "w", encoding="utf-8") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"kubeconfig": os.path.join(runtime_dir, "kubeconfig")}}, handle)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    started = time.monotonic()
    completed = subprocess.run([sys.executable, MODULE, args_file], capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    result = json.loads(completed.stdout)
    if result.get("failed"):
        raise SystemExit(result["msg"])
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifests-3", help="render-only output with 3 members (rendered when omitted)")
    parser.add_argument("--manifests-5", help="render-only output with pg_cluster_members=5 (rendered when omitted)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replication-info-bench-") as scratch:
        for members, given in ((3, args.manifests_3), (5, args.manifests_5)):
            manifests = given or render_manifests(os.path.join(scratch, f"manifests-{members}"), {"pg_cluster_members": members})
            runtime = LocalPods.start(manifests)
            try:
                wait_streaming(runtime, members - 1)
                collect_times = [time_collect(runtime.runtime_dir) for _run in range(args.runs)]
                module_times = [time_module(runtime.runtime_dir, scratch) for _run in range(args.runs)]
            finally:
                runtime.down()
            print(
                f"{members} members: collect {statistics.median(collect_times):.2f} s, module process {statistics.median(module_times):.2f} s "
                f"(median of {args.runs}; load average {os.getloadavg()[0]:.1f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
