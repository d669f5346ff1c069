#!/usr/bin/env python
"""Benchmark: unplanned failovers under continuous writes on a cluster of the local pod runtime.

Each run kills the primary's PostgreSQL with SIGKILL and keeps its pod stopped (a lost node), runs
pg_failover through ansible-playbook (as users do), then starts the old primary again, which comes
back as a standby (pod start-up rewinds it), and waits until the cluster is healthy. A writer
(tests/integration/writer.py) commits continuously through a multi-host conninfo with
target_session_attrs=read-write. Printed per run and as median / max:

- the write gap from the module's start: from the moment ansible-playbook is started for
  pg_failover until the writer's first acknowledged commit on the new primary. Part of it by
  design: ansible-playbook's own start (about 1.5 s here) and the confirmation window
  (``probes`` over ``confirm_seconds``);
- the module's own duration and each step's;
- acknowledged commits missing afterwards (must be 0).

Prints figures, asserts nothing about time.

  hack/bench/failover.py [--runs N] [--confirm-seconds S] [--manifests DIR]
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
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))

from writer import Writer, cluster_conninfo  # noqa: E402

from _module import run_module  # noqa: E402

CLI = os.path.join(REPO_ROOT, "tests", "localpods", "cli.py")


def cli(runtime_dir: str, *args: str) -> None:
    subprocess.run([sys.executable, CLI, "--state-dir", runtime_dir, *args], check=True, capture_output=True)


def streaming(runtime_dir: str, primary: str) -> int:
    completed = subprocess.run(
        [sys.executable, CLI, "--state-dir", runtime_dir, "exec", primary, "--", "psql", "-X", "-A", "-t", "-d", "postgres", "-c",
         "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"],
        capture_output=True, text=True, check=False,
    )
    return int(completed.stdout.strip() or 0) if completed.returncode == 0 else 0


def bench(runtime_dir: str, runs: int, scratch: str, confirm_seconds: int) -> int:
    args = {"probes": 3, "confirm_seconds": confirm_seconds, "exec_timeout": 5, "lease_seconds": 2}
    gaps, durations = [], []
    with Writer(cluster_conninfo(runtime_dir)) as writer:
        time.sleep(1)
        for run in range(1, runs + 1):
            with open(os.path.join(runtime_dir, "api", "postgres", "configmap", "postgres-primary.json"), encoding="utf-8") as record:
                primary = json.load(record)["data"]["primary"]
            cli(runtime_dir, "kill", primary, "--signal", "KILL")
            cli(runtime_dir, "stop", primary)
            started = time.monotonic()
            result = run_module("pg_failover", {"kubeconfig": os.path.join(runtime_dir, "kubeconfig"), **args}, scratch)
            if result.get("failed"):
                print(f"run {run}: failover failed: {result.get('msg')}")
                return 1
            writer.wait_acks_after(started, count=1)
            first = next(ack.at for ack in writer.acks if ack.at >= started)
            gaps.append(first - started)
            durations.append(result.get("duration_ms") or 0)
            steps = ", ".join(f"{step['name']} {step['duration_ms']}" for step in result["steps"])
            print(
                f"run {run}: {primary} lost -> {result['new_primary']} (lossless {result.get('lossless')}): write gap from the module's "
                f"start {gaps[-1] * 1000:.0f} ms, module {result.get('duration_ms')} ms (steps ms: {steps}); load average {os.getloadavg()[0]:.1f}"
            )
            # The old primary comes back as a standby; wait for a healthy cluster before the next run.
            cli(runtime_dir, "start", primary)
            deadline = time.monotonic() + 120
            while streaming(runtime_dir, result["new_primary"]) < 2:
                if time.monotonic() > deadline:
                    print(f"run {run}: {primary} did not come back as a standby within 120 s")
                    return 1
                time.sleep(0.5)
        missing = writer.missing()
        acked = len(writer.acks)
    print(
        f"summary of {runs} failovers (confirm_seconds={confirm_seconds}): write gap from the module's start median "
        f"{statistics.median(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms; module median {statistics.median(durations):.0f} ms; "
        f"lost acknowledged commits {len(missing)} of {acked} (goal 0); load average {os.getloadavg()[0]:.1f}"
    )
    return 0 if not missing else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--confirm-seconds", type=int, default=3)
    parser.add_argument("--manifests", help="a render-only directory (rendered with default variables when omitted)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as scratch:
        from tests.localpods import cli as localpods  # noqa: E402
        from tests.localpods.fixtures import LocalPods, render_manifests  # noqa: E402

        manifests = args.manifests or render_manifests(os.path.join(scratch, "manifests"))
        runtime = LocalPods(localpods.up(manifests, None, None, 600, True, []))
        try:
            while streaming(runtime.runtime_dir, "postgres-0") < 2:
                time.sleep(0.1)
            return bench(runtime.runtime_dir, args.runs, scratch, args.confirm_seconds)
        finally:
            runtime.down()


if __name__ == "__main__":
    sys.exit(main())
