#!/usr/bin/env python
"""Benchmark: time from `localpods up` to a healthy cluster (every member ready, every standby
streaming), from the role's render-only output with default variables. Prints figures; asserts
nothing about time (goal: under 10 s on an idle 2-core machine).

  hack/bench/localpods_up.py [--manifests DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from tests.localpods import cli  # noqa: E402
from tests.localpods.fixtures import LocalPods, render_manifests  # noqa: E402


def streaming_standbys(runtime: LocalPods) -> int:
    return int(runtime.psql("postgres-0", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifests", help="a render-only directory (rendered with default variables when omitted)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="localpods-bench-") as scratch:
        manifests = args.manifests or render_manifests(os.path.join(scratch, "manifests"))
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            runtime = LocalPods(cli.up(manifests, None, None, 600, True, []))
            ready = time.monotonic() - started
            try:
                while streaming_standbys(runtime) < 2:
                    time.sleep(0.05)
                healthy = time.monotonic() - started
            finally:
                runtime.down()
            load = os.getloadavg()[0]
            print(
                f"run {run}: all 3 members ready {ready:.1f} s, healthy (2 standbys streaming) {healthy:.1f} s after up (load average {load:.1f}, goal < 10 s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
