#!/usr/bin/env python
"""Benchmark: switchovers under continuous writes on a cluster of the local pod runtime.

Runs pg_switchover (through ansible-playbook, as users do) back and forth several times while a
writer (tests/integration/writer.py) commits continuously through a multi-host conninfo with
target_session_attrs=read-write, then prints, per switchover and as median / max:

- the longest gap between two acknowledged commits while the module ran (what clients feel);
- the module's own write-unavailable window (stop -> promotion done) and the time from the old
  primary's stop until the synchronous standbys (old primary included) streamed again;
- acknowledged commits missing afterwards (must be 0).

Prints figures, asserts nothing about time. Goal on an idle 2-core machine: median gap <= 500 ms,
synchronous standby back <= 5 s, 0 lost. The load average is printed because other processes on
the machine inflate every figure.

  hack/bench/switchover.py [--runs N] [--runtime-dir DIR | --manifests DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))

from writer import Writer, cluster_conninfo  # noqa: E402

from _module import run_module  # noqa: E402


def bench(runtime_dir: str, runs: int, scratch: str) -> int:
    gaps, windows, sync_back = [], [], []
    lost = 0
    with Writer(cluster_conninfo(runtime_dir)) as writer:
        time.sleep(1)
        for run in range(1, runs + 1):
            with open(os.path.join(runtime_dir, "api", "postgres", "configmap", "postgres-primary.json"), encoding="utf-8") as record:
                current = json.load(record)["data"]["primary"]
            # Back and forth between the first two members.
            candidate = "postgres-1" if current != "postgres-1" else "postgres-0"
            started = time.monotonic()
            result = run_module("pg_switchover", {"kubeconfig": os.path.join(runtime_dir, "kubeconfig"), "candidate": candidate}, scratch)
            ended = time.monotonic()
            if result.get("failed"):
                print(f"run {run}: switchover to {candidate} failed: {result.get('msg')}")
                return 1
            # The pause is over once the writer commits again; wait for that before measuring.
            writer.wait_acks_after(ended, count=3)
            gap = writer.longest_gap(started, time.monotonic())
            back = (result.get("write_unavailable_ms") or 0) + (result.get("sync_back_ms") or 0)
            gaps.append(gap)
            windows.append(result.get("write_unavailable_ms") or 0)
            sync_back.append(back / 1000)
            steps = ", ".join(f"{step['name']} {step['duration_ms']}" for step in result["steps"])
            print(
                f"run {run}: {result['previous_primary']} -> {result['new_primary']}: longest gap {gap * 1000:.0f} ms, "
                f"write-unavailable {result.get('write_unavailable_ms')} ms, sync standbys back {back} ms after the stop, "
                f"total {result.get('duration_ms')} ms (steps ms: {steps}); load average {os.getloadavg()[0]:.1f}"
            )
            time.sleep(1)
        missing = writer.missing()
        lost = len(missing)
        acked = len(writer.acks)
    print(
        f"summary of {runs} switchovers: longest gap median {statistics.median(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms "
        f"(goal median <= 500 ms); write-unavailable median {statistics.median(windows):.0f} ms; "
        f"synchronous standbys back median {statistics.median(sync_back):.2f} s, max {max(sync_back):.2f} s (goal <= 5 s); "
        f"lost acknowledged commits {lost} of {acked} (goal 0); load average {os.getloadavg()[0]:.1f}"
    )
    return 0 if lost == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--runtime-dir", help="a running cluster of the local pod runtime (else one is started and removed)")
    parser.add_argument("--manifests", help="a render-only directory (rendered with default variables when omitted)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchover-bench-") as scratch:
        if args.runtime_dir:
            return bench(args.runtime_dir, args.runs, scratch)
        from tests.localpods import cli  # noqa: E402
        from tests.localpods.fixtures import LocalPods, render_manifests  # noqa: E402

        manifests = args.manifests or render_manifests(os.path.join(scratch, "manifests"))
        runtime = LocalPods(cli.up(manifests, None, None, 600, True, []))
        try:
            while int(runtime.psql("postgres-0", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")) < 2:
                time.sleep(0.1)
            return bench(runtime.runtime_dir if hasattr(runtime, "runtime_dir") else runtime.state_dir, args.runs, scratch)
        finally:
            runtime.down()


if __name__ == "__main__":
    sys.exit(main())
