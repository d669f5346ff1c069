# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The failover procedure against the simulated cluster of test_switchover_fake_cluster."""

from __future__ import annotations

import pytest
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ExecTimeout, StatefulSetMembers
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._failover import Failover, FailoverFailed, FailoverOptions, choose
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import Timeouts
from test_switchover_fake_cluster import NAME, FakeCluster


@pytest.fixture
def cluster(tmp_path) -> FakeCluster:
    fake = FakeCluster(str(tmp_path))
    fake.write()
    return fake


def failover(cluster: FakeCluster, check_mode: bool = False, **options) -> dict:
    operation = Failover(
        cluster.backend(), StatefulSetMembers(statefulset=NAME), Timeouts(exec=5, stop=5, promote=5, rejoin=5), lease_seconds=10, sleep=lambda _s: None
    )
    return operation.run(FailoverOptions(**options), check_mode=check_mode)


def lose_primary(cluster: FakeCluster) -> int:
    primary = cluster.members["postgres-0"]
    acknowledged = primary.lsn
    primary.running = False
    primary.gone = True
    return acknowledged


def test_lost_primary_fails_over_to_the_most_advanced_standby(cluster):
    cluster.members["postgres-1"].paused = True
    cluster.write(0x800)
    acknowledged = lose_primary(cluster)
    result = failover(cluster)
    assert result["changed"] is True
    assert (result["previous_primary"], result["new_primary"], result["epoch"]) == ("postgres-0", "postgres-2", 2)
    assert result["lossless"] is True and result["gap_bytes"] == 0
    assert [probe["alive"] for probe in result["probes"]] == [False, False, False]
    assert [step["name"] for step in result["steps"]] == ["confirm", "choose", "lease", "record", "promote", "route", "repoint", "release"]
    assert cluster.primaries() == ["postgres-2"]
    assert cluster.members["postgres-2"].lsn >= acknowledged
    assert cluster.record()["data"] == {"primary": "postgres-2", "epoch": "2"}
    assert cluster.service_target() == "postgres-2"
    assert cluster.members["postgres-1"].upstream == "postgres-2"
    # A second run finds the recorded primary running: nothing to do.
    again = failover(cluster)
    assert again["changed"] is False


def test_check_mode_returns_the_plan_and_changes_nothing(cluster):
    from test_switchover import mutations

    cluster.write(0x800)
    lose_primary(cluster)
    record = cluster.record()
    result = failover(cluster, check_mode=True)
    assert result["changed"] is True
    assert (result["previous_primary"], result["new_primary"], result["primary"]) == ("postgres-0", "postgres-1", "postgres-1")
    assert result["diff"] == {"before": {"primary": "postgres-0", "epoch": 1}, "after": {"primary": "postgres-1", "epoch": 2}}
    assert [step["name"] for step in result["steps"]] == ["confirm", "choose"]
    assert mutations(cluster) == []
    assert cluster.record() == record and cluster.primaries() == []
    assert cluster.service_target() == "postgres-0"


def test_alive_primary_is_not_failed_over(cluster):
    record = cluster.record()
    result = failover(cluster, probes=2)
    assert result["changed"] is False and "nothing to fail over" in result["findings"][0]
    assert cluster.record() == record and cluster.primaries() == ["postgres-0"]
    assert not [argv for _pod, argv in cluster.calls if argv[0].endswith("ctl.sh")]


def test_slow_primary_that_answers_within_the_window_is_not_failed_over(cluster):
    seen = {"n": 0}

    def slow_first(pod, argv):
        if pod == "postgres-0" and argv[1:2] == ["state"]:
            seen["n"] += 1
            if seen["n"] == 1:
                raise ExecTimeout("exec in pod postgres-0: no exit status within 5s")

    cluster.before_exec = slow_first
    # The record does not name the running primary's peer... the primary is still running: make
    # the first observation believe it is gone by hiding it from psql too.
    cluster.members["postgres-0"].running = False
    cluster.members["postgres-0"].gone = False

    def back_later(pod, argv):
        slow_first(pod, argv)
        if seen["n"] >= 1:
            cluster.members["postgres-0"].running = True

    cluster.before_exec = back_later
    with pytest.raises(FailoverFailed, match="alive"):
        failover(cluster, probes=3)
    assert cluster.record()["data"]["primary"] == "postgres-0"


def test_candidate_too_far_behind_is_refused_with_the_gap_unless_forced(cluster):
    cluster.members["postgres-2"].paused = True
    cluster.write(0x5000)
    lose_primary(cluster)
    with pytest.raises(FailoverFailed, match="candidate postgres-2 received 20480 bytes less WAL than postgres-1"):
        failover(cluster, candidate="postgres-2")
    assert cluster.record()["data"]["primary"] == "postgres-0"
    result = failover(cluster, candidate="postgres-2", force=True)
    assert result["new_primary"] == "postgres-2" and result["lossless"] is False
    # postgres-1 had WAL past the fork: stopped, rewound, started as a standby of postgres-2.
    assert ("postgres-1", "stop") in [(pod, argv[1]) for pod, argv in cluster.calls if argv[0].endswith("ctl.sh")]
    assert cluster.members["postgres-1"].running and cluster.members["postgres-1"].upstream == "postgres-2"


def test_asynchronous_cluster_needs_force(cluster):
    cluster.sync_names = ""
    lose_primary(cluster)
    with pytest.raises(FailoverFailed, match="asynchronous replication"):
        failover(cluster)
    assert failover(cluster, force=True)["new_primary"] == "postgres-1"


def test_choose_counts_unreachable_synchronous_standbys():
    def standby(received: str) -> dict:
        return {"running": True, "in_recovery": True, "receive_lsn": received, "replay_lsn": received}

    states = {"p-0": None, "p-1": standby("0/3000100"), "p-2": None, "p-3": standby("0/3000000")}
    # ANY 1 and one of three standbys unreachable: that one may hold commits no one else has.
    unsafe = choose(states, "p-0", sync_required=1, requested=None, max_lag_bytes=0)
    assert unsafe.candidate == "p-1" and unsafe.lossless is False and "unreachable" in unsafe.refusals[0]
    # ANY 2: every acknowledged commit is on two standbys, so on one of the reachable ones.
    safe = choose(states, "p-0", sync_required=2, requested=None, max_lag_bytes=0)
    assert safe.lossless is True and safe.refusals == []


FAILOVER_KILL_POINTS = [
    ("step", "record"),
    ("step", "promote"),
    ("step", "route+repoint"),
    ("step", "release"),
    ("exec", "promote"),
    ("exec", "follow"),
]


@pytest.mark.parametrize("kind, point", FAILOVER_KILL_POINTS, ids=[f"{kind}-{point}" for kind, point in FAILOVER_KILL_POINTS])
def test_killed_at_any_step_then_rerun_finishes_the_failover(cluster, monkeypatch, kind, point):
    from test_switchover import Clock, Killed, kill_at, revive

    clock = Clock()

    def run(**options) -> dict:
        operation = Failover(
            cluster.backend(),
            StatefulSetMembers(statefulset=NAME),
            Timeouts(exec=5, stop=5, promote=5, rejoin=5),
            lease_seconds=10,
            sleep=lambda _s: None,
            now=clock,
            poll_interval=0.01,
        )
        return operation.run(FailoverOptions(**options))

    cluster.write(0x800)
    acknowledged = lose_primary(cluster)
    kill_at(cluster, monkeypatch, kind, point)
    with pytest.raises(Killed):
        run()
    revive(cluster, monkeypatch)
    with pytest.raises(FailoverFailed, match="another operation holds the lease"):
        run()
    clock.advance(120)
    result = run()
    assert not result.get("failed") and result["changed"] is True, result
    new = cluster.record()["data"]["primary"]
    assert new != "postgres-0" and result["new_primary"] == new
    assert cluster.primaries() == [new]
    assert cluster.service_target() == new
    assert cluster.members[new].lsn >= acknowledged
    other = next(name for name in ("postgres-1", "postgres-2") if name != new)
    assert cluster.members[other].upstream == new
    assert cluster.record()["metadata"].get("annotations", {}).get("dbonk8s.io/lease-holder") in (None, "")
    # And the run after that has nothing left to do.
    assert run()["changed"] is False
