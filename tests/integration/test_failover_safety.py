# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A failover promotes only a standby shown to hold every acknowledged commit: the members that
could not be asked are counted from what the cluster should have, not from the pods it happens to
show. playbooks/failover.yml and playbooks/status.yml run through ansible-playbook against real
clusters of the local pod runtime, with a writer recording every acknowledged commit.

The standby postgres-1 stops receiving WAL (an empty primary_conninfo), so that commits acknowledged
afterwards are on postgres-2 alone; the primary is then killed and postgres-2 lost in one of three
ways (its pod gone, PostgreSQL stopped in its pod, every process of its pod frozen). postgres-1 still
answers, and is behind: promoting it would lose those commits.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import Cluster, play, running_cluster  # noqa: E402
from writer import Writer, cluster_conninfo  # noqa: E402

from tests.localpods.fixtures import render_manifests  # noqa: E402

CONFIRM_SECONDS = 3
FAILOVER_VARS = {"pg_failover_confirm_seconds": CONFIRM_SECONDS}


@pytest.fixture(scope="module")
def three(localpods_manifests):
    with running_cluster(localpods_manifests, 3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    manifests = render_manifests(str(tmp_path_factory.mktemp("any2") / "manifests"), {"pg_cluster_members": 5, "pg_cluster_sync_count": 2})
    with running_cluster(manifests, 5) as cluster:
        yield cluster


def test_a_member_without_a_pod_makes_status_unhealthy(three):
    code, result, _out = play("status", three.runtime_dir, pg_status_fail_unhealthy=True)
    assert code == 0 and result["cluster"]["healthy"] is True, result["cluster"]["reasons"]
    three.cli("stop", "postgres-2")
    try:
        code, result, out = play("status", three.runtime_dir, pg_status_fail_unhealthy=True)
        assert code != 0, "fail_unhealthy passed with a member whose pod does not exist"
        cluster = result["cluster"]
        assert cluster["healthy"] is False and cluster["absent"] == ["postgres-2"] and cluster["members"] == 3
        assert any(reason.startswith("postgres-2 is down: no pod") for reason in cluster["reasons"]), cluster["reasons"]
        assert "postgres-2 is down: no pod" in out
    finally:
        three.cli("start", "postgres-2")
    three.pods.wait_healthy("postgres-0")


def lossy_setup(cluster: Cluster, writer: Writer) -> float:
    """postgres-1 cut off, commits acknowledged by postgres-2 alone, then the primary killed; returns
    the moment of the primary's loss."""
    cluster.cut_from_primary("postgres-1")
    writer.wait_acks_after(time.monotonic(), count=50)
    cluster.lose_primary("postgres-0")
    lost_at = time.monotonic()
    return lost_at


@pytest.mark.parametrize("how", ["absent", "stopped", "frozen"])
def test_a_standby_that_cannot_be_asked_blocks_the_failover(three, how):
    record = three.pods.record()["data"]
    with Writer(cluster_conninfo(three.runtime_dir)) as writer:
        lossy_setup(three, writer)
        writer.stop()
        three.lose("postgres-2", how)
        try:
            started = time.monotonic()
            code, result, _out = play("failover", three.runtime_dir, **FAILOVER_VARS)
            wall = time.monotonic() - started
            assert code != 0 and result.get("failed") and result["changed"] is False, result
            assert result["candidate"] == "postgres-1" and result["lossless"] is False
            assert list(result["not_asked"]) == ["postgres-2"], result["not_asked"]
            assert [(refusal["code"], refusal["forceable"]) for refusal in result["refusals"]] == [("not_asked", True)]
            message = result["msg"]
            assert "postgres-2" in message and "may exist only on postgres-2" in message, message
            assert f"after {result['received']['postgres-1']}" in message, message
            # No probe hangs: the refusal comes within the confirmation window and 5 s more.
            assert result["duration_ms"] <= (CONFIRM_SECONDS + 5) * 1000, (result["duration_ms"], result["steps"], wall)
            print(f"{how}: refused after {result['duration_ms']} ms (ansible-playbook: {wall:.1f} s)")
            # Nothing changed: the record, and both standbys still in recovery once postgres-2 is back.
            assert three.pods.record()["data"] == record
            assert three.pods.sql("postgres-1", "SELECT pg_is_in_recovery()") == "t"
        finally:
            three.recover("postgres-2", how)
        three.restore("postgres-0", record["epoch"])
        assert writer.missing() == []


def test_forced_failover_promotes_and_says_what_may_be_lost(three):
    with Writer(cluster_conninfo(three.runtime_dir)) as writer:
        lossy_setup(three, writer)
        writer.stop()
        acked = {ack.seq for ack in writer.acks}
        three.lose("postgres-2", "absent")
        code, result, _out = play("failover", three.runtime_dir, pg_failover_force=True, **FAILOVER_VARS)
        assert code == 0 and result["changed"] is True and result["new_primary"] == "postgres-1", result.get("msg")
        assert result["lossless"] is False and "may exist only on postgres-2" in result["loss_assessment"]
        assert any(note.startswith("forced: acknowledged commits may be lost") for note in result["notes"])
        # What it said may be lost was lost indeed: the commits only postgres-2 had confirmed.
        missing = writer.missing()
        assert missing and set(missing) <= acked
    three.cli("start", "postgres-2")
    three.cli("start", "postgres-0")


def test_any_2_of_5_tolerates_one_standby_lost_not_two(five):
    record = five.pods.record()["data"]
    with Writer(cluster_conninfo(five.runtime_dir)) as writer:
        writer.wait_acks_after(time.monotonic(), count=50)
        five.lose_primary("postgres-0")
        five.lose("postgres-3", "absent")
        five.lose("postgres-4", "frozen")
        try:
            code, result, _out = play("failover", five.runtime_dir, **FAILOVER_VARS)
            assert code != 0 and [refusal["code"] for refusal in result["refusals"]] == ["not_asked"], result.get("msg")
            assert sorted(result["not_asked"]) == ["postgres-3", "postgres-4"]
            assert "ANY 2 over 4 listed standbys" in result["msg"]
            assert five.pods.record()["data"] == record
        finally:
            five.recover("postgres-4", "frozen")
        five.restore("postgres-0", record["epoch"])
        writer.wait_acks_after(time.monotonic(), count=50)

        five.lose_primary("postgres-0")
        five.lose("postgres-4", "absent")
        code, result, _out = play("failover", five.runtime_dir, **FAILOVER_VARS)
        assert code == 0 and result["changed"] is True and result["lossless"] is True, result.get("msg")
        assert list(result["not_asked"]) == ["postgres-4"] and result["refusals"] == []
        assert "at most 1 may be missing" in result["loss_assessment"]
        new = result["new_primary"]
        writer.wait_acks_after(time.monotonic(), count=5)
        assert writer.missing() == []
    five.cli("start", "postgres-4")
    five.cli("start", "postgres-0")
    five.pods.wait_healthy(new)
