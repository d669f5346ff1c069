# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The switchover procedure against a simulated cluster (real API store, simulated pods)."""

from __future__ import annotations

import datetime
import json

import pytest
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ExecResult, StatefulSetMembers
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import (
    ANNOTATION_PREFIX,
    Lease,
    LeaseHeld,
    RecordStore,
    Timeouts,
    required_sync_count,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._switchover import (
    STEPS,
    Switchover,
    SwitchoverFailed,
    SwitchoverOptions,
)
from test_switchover_fake_cluster import NAME, FakeCluster

MUTATING = {"hold", "release", "checkpoint", "stop", "promote", "follow"}


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the procedure runs."""


def kill_at(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, kind: str, point: str) -> None:
    """The next run dies (``Killed``) at the ``ctl.sh`` verb ``point`` (kind ``exec``) or at the
    lease update of step ``point`` (kind ``step``); ``revive`` undoes it."""
    if kind == "exec":

        def kill(pod, argv):
            if argv[0].endswith("ctl.sh") and argv[1] == point:
                raise Killed()

        cluster.before_exec = kill
    else:
        update = Lease.update

        def killing_update(self, step=None, **kwargs):
            if step == point:
                raise Killed()
            return update(self, step=step, **kwargs)

        monkeypatch.setattr(Lease, "update", killing_update)


def revive(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.before_exec = None
    monkeypatch.undo()


class Clock:
    """Wall clock for lease expiry that a test can move forward."""

    def __init__(self) -> None:
        self.offset = datetime.timedelta()

    def __call__(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += datetime.timedelta(seconds=seconds)


@pytest.fixture
def cluster(tmp_path) -> FakeCluster:
    return FakeCluster(str(tmp_path))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def switchover(cluster: FakeCluster, clock: Clock, holder: str | None = None) -> Switchover:
    timeouts = Timeouts(exec=5, stop=5, promote=5, replay=0.3, rejoin=2)
    return Switchover(
        cluster.backend(), StatefulSetMembers(statefulset=NAME), timeouts, lease_seconds=10, holder=holder, now=clock, poll_interval=0.01
    )


def mutations(cluster: FakeCluster) -> list[tuple[str, str]]:
    return [(pod, argv[1]) for pod, argv in cluster.calls if argv[0].endswith("ctl.sh") and argv[1] in MUTATING]


def assert_converged(cluster: FakeCluster, primary: str, epoch: int) -> None:
    """Exactly one primary, the one recorded and routed; everyone else streams from it."""
    assert cluster.primaries() == [primary]
    record = cluster.record()
    assert record["data"] == {"primary": primary, "epoch": str(epoch)}
    assert not any(key.startswith(ANNOTATION_PREFIX) for key in (record["metadata"].get("annotations") or {}))
    assert cluster.service_target() == primary
    assert cluster.role_labels() == {name: "primary" if name == primary else "replica" for name in cluster.members}
    for member in cluster.members.values():
        assert member.running and not member.hold
        if member.name != primary:
            assert member.in_recovery and member.upstream == primary, member
        assert member.epoch == epoch


def test_switchover_and_back(cluster, clock):
    cluster.write()
    before = cluster.members["postgres-0"].lsn
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    assert result["changed"] is True
    assert (result["previous_primary"], result["new_primary"], result["epoch"], result["timeline"]) == ("postgres-0", "postgres-1", 2, 2)
    assert [step["name"] for step in result["steps"]] == [step[0] for step in STEPS]
    assert all(step["status"] == "ok" and step["duration_ms"] >= 0 for step in result["steps"])
    assert isinstance(result["write_unavailable_ms"], int) and isinstance(result["sync_back_ms"], int)
    assert result["switchover_lsn"] == "0/3001000"
    assert result["diff"] == {"before": {"primary": "postgres-0", "epoch": 1}, "after": {"primary": "postgres-1", "epoch": 2}}
    assert_converged(cluster, "postgres-1", 2)
    # Nothing the old primary had is missing on the new one.
    assert cluster.members["postgres-1"].lsn > before
    # The record names the candidate before it is promoted (no moment with an unrecorded primary).
    verbs = mutations(cluster)
    assert verbs.index(("postgres-1", "promote")) > verbs.index(("postgres-0", "stop"))

    cluster.calls.clear()
    back = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-0"))
    assert (back["previous_primary"], back["new_primary"], back["epoch"]) == ("postgres-1", "postgres-0", 3)
    assert_converged(cluster, "postgres-0", 3)


def test_without_waiting_for_rejoin_the_synchronous_standbys_are_still_waited_for(cluster, clock):
    cluster.write()
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1", wait_for_rejoin=False))
    assert [step["name"] for step in result["steps"]] == [step[0] for step in STEPS]
    assert isinstance(result["sync_back_ms"], int)
    assert cluster.primaries() == ["postgres-1"]


def test_check_mode_result_names_the_primary_it_would_make(cluster, clock):
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-2"), check_mode=True)
    assert (result["previous_primary"], result["new_primary"], result["primary"]) == ("postgres-0", "postgres-2", "postgres-2")
    assert cluster.primaries() == ["postgres-0"]


def test_candidate_already_primary_changes_nothing(cluster, clock):
    record_before = cluster.record()
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-0"))
    assert result["changed"] is False
    assert mutations(cluster) == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert cluster.record() == record_before


def test_default_candidate_is_the_least_lagged_synchronous_standby(cluster, clock):
    cluster.members["postgres-1"].paused = True
    cluster.write(0x100)
    cluster.members["postgres-1"].paused = False
    cluster.members["postgres-1"].lsn -= 0x100
    result = switchover(cluster, clock).run(SwitchoverOptions())
    assert result["new_primary"] == "postgres-2"
    assert_converged(cluster, "postgres-2", 2)


def test_check_mode_returns_the_plan_and_changes_nothing(cluster, clock):
    record_before = cluster.record()
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-2"), check_mode=True)
    assert result["changed"] is True
    assert [entry["step"] for entry in result["plan"]] == [step[0] for step in STEPS]
    assert result["diff"]["after"] == {"primary": "postgres-2", "epoch": 2}
    assert mutations(cluster) == []
    assert cluster.record() == record_before


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda c: setattr(c.members["postgres-1"], "paused", True) or c.write(0x2000000), "replay is paused on candidate postgres-1"),
        (lambda c: setattr(c.members["postgres-1"], "running", False), "candidate postgres-1 is not running"),
        (lambda c: setattr(c.members["postgres-2"], "in_recovery", False), "2 primaries (postgres-0, postgres-2): split brain"),
        (lambda c: None, "candidate postgres-9 is not a member"),
    ],
    ids=["lagging", "stopped", "two-primaries", "unknown"],
)
def test_refusals_change_nothing(cluster, clock, setup, message):
    setup(cluster)
    record_before = cluster.record()
    candidate = "postgres-9" if "postgres-9" in message else "postgres-1"
    with pytest.raises(SwitchoverFailed) as failure:
        switchover(cluster, clock).run(SwitchoverOptions(candidate=candidate))
    assert message in str(failure.value)
    assert mutations(cluster) == []
    assert cluster.record() == record_before


def test_lag_limit(cluster, clock):
    cluster.members["postgres-1"].paused = True
    cluster.write(0x5000)
    cluster.members["postgres-1"].paused = False
    with pytest.raises(SwitchoverFailed, match=r"candidate postgres-1 is 20480 bytes behind the primary \(replay\), more than max_lag_bytes=1024"):
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1", max_lag_bytes=1024))


def test_a_live_lease_refuses_naming_its_holder(cluster, clock):
    other = switchover(cluster, clock, holder="switchover-elsewhere-1")
    other.observe()
    other.take_lease("postgres-0", "postgres-2", 1)
    with pytest.raises(SwitchoverFailed, match="switchover by switchover-elsewhere-1") as failure:
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    assert failure.value.result["lease"]["holder"] == "switchover-elsewhere-1"
    assert mutations(cluster) == []


def test_lease_optimistic_concurrency(cluster, clock):
    store = RecordStore(cluster.backend(), NAME)
    first = Lease(store, "run-a", "switchover", 10, now=clock)
    second = Lease(store, "run-b", "switchover", 10, now=clock)
    stale = store.read()
    first.acquire("postgres-0", "postgres-1", 1, "lease")
    # run-b read the record before run-a wrote it: its replace conflicts, it re-reads, it is refused.
    original_read = store.read
    reads = iter([stale])
    store.read = lambda: next(reads, None) or original_read()
    with pytest.raises(LeaseHeld, match="by run-a"):
        second.acquire("postgres-0", "postgres-2", 1, "lease")
    # An expired lease is taken over, and the run that took it knows what was interrupted.
    clock.advance(60)
    second.acquire("postgres-0", "postgres-2", 1, "lease")
    assert second.taken_over is not None and second.taken_over.holder == "run-a"
    with pytest.raises(Exception, match="lost the lease"):
        first.update(step="stop")


def test_candidate_missing_the_shutdown_checkpoint_aborts_and_restores(cluster, clock):
    cluster.write()

    def cut_candidate(pod, argv):
        if argv[1:2] == ["stop"]:
            cluster.members["postgres-1"].upstream = None  # its walreceiver is gone: it misses the end

    cluster.before_exec = cut_candidate
    with pytest.raises(SwitchoverFailed, match="switchover aborted, postgres-0 is the primary again") as failure:
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    assert failure.value.result["rolled_back"] is True
    assert cluster.primaries() == ["postgres-0"]
    record = cluster.record()
    assert record["data"] == {"primary": "postgres-0", "epoch": "1"}
    assert not any(key.startswith(ANNOTATION_PREFIX) for key in record["metadata"].get("annotations") or {})
    assert ("postgres-1", "promote") not in mutations(cluster)


# The module dies when a step begins (its name is written into the lease first), or right before
# a command in a pod (verb, occurrence). The verify step writes nothing (the stop's lease covers
# it): dying there is dying as the record step begins.
KILL_POINTS = [
    ("step", "checkpoint"),
    ("step", "stop"),
    ("step", "record"),
    ("step", "promote+route+repoint"),
    ("step", "rejoin"),
    ("step", "wait"),
    ("step", "release"),
    ("exec", "follow"),
    ("exec", "release"),
]


@pytest.mark.parametrize("kind, point", KILL_POINTS, ids=[f"{kind}-{point}" for kind, point in KILL_POINTS])
def test_killed_at_any_step_then_rerun_converges(cluster, clock, monkeypatch, kind, point):
    cluster.write()
    acknowledged = cluster.members["postgres-0"].lsn
    kill_at(cluster, monkeypatch, kind, point)
    with pytest.raises(Killed):
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    revive(cluster, monkeypatch)
    assert len(cluster.primaries()) <= 1

    # Before the lease expires, a rerun is refused and names the dead run.
    with pytest.raises(SwitchoverFailed, match="another operation holds the lease"):
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    clock.advance(120)
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    assert "converged" in result
    assert_converged(cluster, "postgres-1", cluster.members["postgres-1"].epoch)
    assert cluster.members["postgres-1"].lsn >= acknowledged


def test_failure_after_the_record_rolls_forward_on_rerun(cluster, clock):
    def promote_fails(pod, argv):
        if argv[1:2] == ["promote"]:
            cluster.members["postgres-1"].gone = True

    cluster.before_exec = promote_fails
    with pytest.raises(SwitchoverFailed, match="run the module again to finish"):
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    cluster.before_exec = None
    cluster.members["postgres-1"].gone = False
    # The old primary stays held: never two primaries.
    assert cluster.primaries() == [] and cluster.members["postgres-0"].hold
    # The failed run expired its lease itself: the rerun need not wait.
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    assert "promoted postgres-1 (epoch 2)" in result["converged"]
    assert_converged(cluster, "postgres-1", 2)


def test_rerun_waits_for_the_candidate_to_stream_again_after_finishing(cluster, clock, monkeypatch):
    # Killed during the stop: the rerun releases the old primary, whose standbys reconnect only
    # after their walreceivers' retry interval. The preflight must see the candidate streaming.
    kill_at(cluster, monkeypatch, "step", "record")
    with pytest.raises(Killed):
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    revive(cluster, monkeypatch)
    assert cluster.members["postgres-0"].hold and not cluster.members["postgres-0"].running
    assert cluster.record()["data"]["primary"] == "postgres-0"
    clock.advance(120)
    reconnecting = {"observations": 0}
    psql = FakeCluster._psql

    def psql_while_reconnecting(self, member):
        result = psql(self, member)
        if not any(pod == "postgres-0" and argv[1:2] == ["release"] for pod, argv in self.calls) or reconnecting["observations"] >= 3:
            return result
        status = json.loads(result.stdout)
        status["replication"] = [row for row in status["replication"] if row["application_name"] != "postgres-1"]
        if member.name == "postgres-1":
            reconnecting["observations"] += 1
            status["wal_receiver"] = None
        return ExecResult(result.rc, json.dumps(status) + "\n", result.stderr)

    monkeypatch.setattr(FakeCluster, "_psql", psql_while_reconnecting)
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    assert reconnecting["observations"] == 3
    assert "released postgres-0 (it was held stopped)" in result["converged"]
    assert_converged(cluster, "postgres-1", 2)


def test_record_drift_is_corrected(cluster, clock):
    cluster.store.patch_merge("Service", "postgres", f"{NAME}-rw", {"spec": {"selector": {"statefulset.kubernetes.io/pod-name": "postgres-2"}}})
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-0"))
    assert result["changed"] is True
    assert any("Service postgres-rw selects postgres-2" in finding for finding in result["findings"])
    assert cluster.service_target() == "postgres-0"
    # Only repointing (a no-op for standbys that already follow it): no stop, no promotion.
    assert {verb for _pod, verb in mutations(cluster)} <= {"follow"}


@pytest.mark.parametrize(
    "setting, count",
    [("", 0), ('ANY 1 ("postgres-0", "postgres-1")', 1), ("FIRST 2 (a, b, c)", 2), ("2 (a, b)", 2), ("a, b", 1), ("*", 1)],
)
def test_required_sync_count(setting, count):
    assert required_sync_count(setting) == count


def test_a_member_without_a_pod_is_named_and_cannot_be_the_candidate(cluster, clock):
    cluster.store.delete("Pod", "postgres", "postgres-2")
    with pytest.raises(SwitchoverFailed, match="candidate postgres-2 is not running"):
        switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-2"))
    assert mutations(cluster) == []
    result = switchover(cluster, clock).run(SwitchoverOptions(candidate="postgres-1"))
    assert result["new_primary"] == "postgres-1"
    assert any(finding.startswith("postgres-2 is down (pod absent)") for finding in result["findings"]), result["findings"]
