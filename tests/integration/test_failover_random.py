# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A seeded random search over failovers of a real 5-member cluster: which standbys stream, which
are lost and how, when the last commit happened, and ANY 1 or ANY 2.

Each episode writes through a writer that records every acknowledged commit, cuts random standbys
off (an empty primary_conninfo) while it writes, stops writing at a random moment (or not at all)
and kills the primary. Then several cases each lose a random set of standbys and run pg_failover:
check mode for all but the last, a real failover for the last. The oracle is the rule, applied to
what the test did: promote exactly when the standbys lost (or restarted since the primary's loss,
so that what they hold is unknown) number at most k - 1. When the module would promote, the
candidate must hold every acknowledged commit: read from the candidate itself (a hot standby, once
it replayed all it received) in check mode, from the new primary after a real failover.

``DBONK8S_FAILOVER_SEED`` replays a run; ``DBONK8S_FAILOVER_CASES`` sets its size (the long test
target runs more).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import Cluster, running_cluster  # noqa: E402
from test_switchover import REPO  # noqa: E402
from writer import TABLE, Writer, cluster_conninfo  # noqa: E402

from tests.localpods.fixtures import render_manifests  # noqa: E402

_COLLECTIONS = os.path.join(REPO, ".collections")
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import lsn_to_int  # noqa: E402
from ansible_collections.dbonk8s.postgresql.plugins.modules import pg_failover  # noqa: E402

CASES = int(os.environ.get("DBONK8S_FAILOVER_CASES", "200"))
SEED = int(os.environ.get("DBONK8S_FAILOVER_SEED", str(time.time_ns() % 1_000_000_007)))
MEMBERS = 5
FAST = {"probes": 1, "confirm_seconds": 0, "exec_timeout": 2, "lease_seconds": 2, "promote_timeout": 20, "rejoin_timeout": 30}


@dataclasses.dataclass
class Tally:
    cases: int = 0
    promotable: int = 0
    promoted_for_real: int = 0
    refused: int = 0
    #: refused cases where a standby that was not asked did hold commits nobody else had
    refused_and_unsafe: int = 0
    acknowledged: int = 0
    #: the ANY k every member runs with now (2 as rendered)
    quorum: int = 2
    #: seconds spent in: the module, reading what members hold, writing and losing the primary, bringing the cluster back
    seconds: dict = dataclasses.field(default_factory=lambda: {"module": 0.0, "held": 0.0, "write": 0.0, "losses": 0.0, "restore": 0.0})

    def timed(self, what: str, func, *args, **kwargs):
        started = time.monotonic()
        try:
            return func(*args, **kwargs)
        finally:
            self.seconds[what] += time.monotonic() - started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    manifests = render_manifests(str(tmp_path_factory.mktemp("random") / "manifests"), {"pg_cluster_members": MEMBERS, "pg_cluster_sync_count": 2})
    with running_cluster(manifests, MEMBERS) as running:
        yield running


def run_failover(capsys, runtime_dir: str, check: bool) -> dict:
    args = {"kubeconfig": os.path.join(runtime_dir, "kubeconfig"), "_ansible_check_mode": check, **FAST}
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit):
        pg_failover.main()
    return json.loads(capsys.readouterr().out)


def sync_setting(k: int) -> str:
    names = ", ".join(f'"postgres-{ordinal}"' for ordinal in range(MEMBERS))
    return f"ANY {k} ({names})"


def set_quorum(cluster: Cluster, tally: "Tally", k: int) -> None:
    """``ANY k`` on every member (the module takes the smallest k of the rendered ANY 2 and what the members report)."""
    if tally.quorum == k:
        return
    for pod in cluster.members:
        cluster.pods.run(
            pod,
            [
                "psql",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                "postgres",
                "-c",
                f"ALTER SYSTEM SET synchronous_standby_names = '{sync_setting(k)}'",
                "-c",
                "SELECT pg_reload_conf()",
            ],
        )
    tally.quorum = k


def held(cluster: Cluster, pod: str, acked: list[int]) -> int:
    """How many of the acknowledged commits ``pod`` holds, once it replayed everything it received."""
    cluster.pods.wait(
        f"{pod} replays what it received",
        lambda: cluster.pods.try_sql(pod, "SELECT pg_last_wal_replay_lsn() >= coalesce(pg_last_wal_receive_lsn(), '0/0')") == "t",
    )
    numbers = ",".join(str(seq) for seq in acked)
    return int(cluster.pods.sql(pod, f"SELECT count(*) FROM {TABLE} WHERE seq = ANY('{{{numbers}}}'::bigint[])"))


def write_then_lose_primary(cluster: Cluster, rng: random.Random, primary: str, cut: list[str], keep_writing: bool) -> Writer:
    """Writes, cuts the standbys of ``cut`` off one after the other while writing, then loses the primary."""
    with Writer(cluster_conninfo(cluster.runtime_dir), interval=0.002) as writer:
        writer.wait_acks_after(time.monotonic(), count=rng.randint(5, 40))
        for pod in rng.sample(cut, len(cut)):
            time.sleep(rng.uniform(0, 0.2))
            cluster.pods.run(pod, ["psql", "-X", "-d", "postgres", "-c", "ALTER SYSTEM SET primary_conninfo = ''", "-c", "SELECT pg_reload_conf()"])
        time.sleep(rng.uniform(0, 0.3))
        if not keep_writing:
            writer.stop()
            time.sleep(rng.uniform(0, 0.2))
        cluster.lose_primary(primary)
    return writer


def episode(cluster: Cluster, rng: random.Random, capsys, tally: Tally, cases: int) -> None:
    record = cluster.pods.record()["data"]
    primary, epoch = record["primary"], record["epoch"]
    standbys = [pod for pod in cluster.members if pod != primary]
    k = rng.choice([1, 2, 2])
    set_quorum(cluster, tally, k)
    cut = [pod for pod in standbys if rng.random() < 0.3]
    keep_writing = rng.random() < 0.5
    plan = f"primary {primary}, ANY {k}, cut {cut or 'none'}, writer {'through the loss' if keep_writing else 'stopped before it'}"
    writer = tally.timed("write", write_then_lose_primary, cluster, rng, primary, cut, keep_writing)
    acked = [ack.seq for ack in writer.acks]
    tally.acknowledged += len(acked)
    restarted: set[str] = set()
    for number in range(cases):
        last = number == cases - 1
        lost = [] if rng.random() < 0.4 else rng.sample(standbys, rng.randint(1, len(standbys)))
        ways = {pod: (rng.choice(["absent", "stopped", "frozen"]) if last else "frozen") for pod in lost}
        for pod, how in ways.items():
            tally.timed("losses", cluster.lose, pod, how)
        unknown = set(lost) | restarted
        allowed = len(unknown) <= k - 1
        label = f"seed {SEED}, {plan}, case {number + 1}/{cases}: lost {ways or 'none'}, restarted {sorted(restarted) or 'none'}"
        try:
            result = tally.timed("module", run_failover, capsys, cluster.runtime_dir, check=not last)
        finally:
            for pod, how in ways.items():
                tally.timed("losses", cluster.recover, pod, how)
                if how != "frozen":
                    restarted.add(pod)
        tally.cases += 1
        if not allowed:
            assert result.get("failed") and result["changed"] is False, f"{label}: promoted although the oracle refuses: {result.get('loss_assessment')}"
            # Every standby lost leaves no candidate at all; otherwise the ones not asked are the reason.
            expected = "no_candidate" if unknown == set(standbys) else "not_asked"
            assert [refusal["code"] for refusal in result["refusals"]] == [expected], f"{label}: {result.get('msg')}"
            assert sorted(result["not_asked"]) == sorted(unknown), f"{label}: {result['not_asked']}"
            tally.refused += 1
            received = result.get("received") or {}
            best = max(received, key=lambda pod: lsn_to_int(received[pod]), default=None)
            if best is None or tally.timed("held", held, cluster, best, acked) < len(acked):
                tally.refused_and_unsafe += 1
            continue
        assert not result.get("failed"), f"{label}: refused although the oracle allows: {result.get('msg')}"
        assert result["lossless"] is True and result["changed"] is True, f"{label}: {result}"
        tally.promotable += 1
        candidate = result["new_primary"]
        assert candidate in standbys and candidate not in unknown, label
        if last:
            tally.promoted_for_real += 1
            primary, epoch = candidate, str(result["epoch"])
        assert tally.timed("held", held, cluster, candidate, acked) == len(acked), f"{label}: {candidate} lacks acknowledged commits"
    tally.timed("restore", cluster.restore, primary, epoch)


def test_random_failovers_promote_exactly_when_the_rule_allows_and_lose_nothing(cluster, capsys):
    print(f"\nfailover search: seed {SEED} (DBONK8S_FAILOVER_SEED={SEED} replays it), {CASES} cases")
    rng = random.Random(SEED)
    tally = Tally()
    started = time.monotonic()
    while tally.cases < CASES:
        episode(cluster, rng, capsys, tally, min(rng.randint(6, 14), CASES - tally.cases))
    with capsys.disabled():
        print(
            f"\nfailover search, seed {SEED}: {tally.cases} cases in {time.monotonic() - started:.0f} s; {tally.promotable} promotable "
            f"({tally.promoted_for_real} promoted for real), {tally.refused} refused ({tally.refused_and_unsafe} of them would have lost "
            f"commits), {tally.acknowledged} commits acknowledged, 0 lost; seconds: "
            + ", ".join(f"{what} {seconds:.0f}" for what, seconds in tally.seconds.items())
        )
    assert tally.promotable >= 0.3 * tally.cases, tally
