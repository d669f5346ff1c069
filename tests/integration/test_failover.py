# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_failover through ansible-playbook against a real 3-member cluster of the local pod runtime,
with the writer recording every acknowledged commit. The tests share one cluster and run in order:
a slow primary is left alone, a killed one is failed over, and then comes back as a standby.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_switchover import MEMBERS, Pods, run_module  # noqa: E402
from writer import Writer, cluster_conninfo  # noqa: E402

from tests.localpods import cli as localpods_cli  # noqa: E402
from tests.localpods.fixtures import LocalPods, _down_all  # noqa: E402

CONFIRM = {"probes": 3, "confirm_seconds": 3, "exec_timeout": 5, "lease_seconds": 2}


@pytest.fixture(scope="module")
def cluster(local_cluster):
    runtime_dir = local_cluster.runtime_dir
    pods = Pods(runtime_dir)
    pods.wait_healthy("postgres-0")
    return local_cluster, runtime_dir, pods


def test_slow_primary_is_not_failed_over(tmp_path, cluster):
    runtime, runtime_dir, pods = cluster
    record = pods.record()
    # The postmaster stops answering for a few seconds (its walsenders go on): a failover now
    # would promote a standby beside a primary that is about to answer again.
    runtime.cli("kill", "postgres-0", "--signal", "STOP")
    resume = threading.Timer(8.0, lambda: runtime.cli("kill", "postgres-0", "--signal", "CONT"))
    resume.start()
    try:
        result = run_module(tmp_path, runtime_dir, module="pg_failover", **{**CONFIRM, "exec_timeout": 3, "confirm_seconds": 6})
    finally:
        resume.join()
    # Refused (a probe answered, or a standby still streams from it), or, when the primary already
    # answered at the module's first look, nothing to do; never a promotion.
    assert result["changed"] is False
    if result.get("failed"):
        assert "alive" in result["msg"], result["msg"]
    assert pods.record() == record
    pods.wait_healthy("postgres-0")


def test_killed_primary_fails_over_without_losing_commits(tmp_path, cluster):
    runtime, runtime_dir, pods = cluster
    with Writer(cluster_conninfo(runtime_dir)) as writer:
        time.sleep(0.5)
        runtime.cli("kill", "postgres-0", "--signal", "KILL")
        # Kept down, as when its node is lost.
        runtime.cli("stop", "postgres-0")
        lost_at = time.monotonic()
        result = run_module(tmp_path, runtime_dir, module="pg_failover", **CONFIRM)
        assert not result.get("failed"), result.get("msg")
        new = result["new_primary"]
        assert new in ("postgres-1", "postgres-2") and result["lossless"] is True
        assert result["previous_primary"] == "postgres-0" and result["epoch"] == 2
        writer.wait_acks_after(time.monotonic(), count=5)
        print(f"write gap from the primary's loss: {writer.longest_gap(lost_at, time.monotonic()) * 1000:.0f} ms")
        assert writer.missing() == []
    assert pods.record()["data"] == {"primary": new, "epoch": "2"}
    other = next(pod for pod in MEMBERS if pod not in ("postgres-0", new))
    pods.wait(
        "the other standby streams from the new primary",
        lambda: pods.try_sql(new, f"SELECT state FROM pg_stat_replication WHERE application_name = '{other}'") == "streaming",
    )


def test_old_primary_returns_as_a_standby_and_refuses_writes(cluster):
    runtime, _runtime_dir, pods = cluster
    new = pods.record()["data"]["primary"]
    runtime.cli("start", "postgres-0")
    pods.wait_healthy(new)
    assert pods.sql("postgres-0", "SELECT pg_is_in_recovery()") == "t"
    assert pods.sql("postgres-0", "SELECT split_part(sender_host, '.', 1) FROM pg_stat_wal_receiver") == new
    timeline = pods.sql(new, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
    assert pods.sql("postgres-0", "SELECT received_tli FROM pg_stat_wal_receiver") == timeline
    refused = pods.run("postgres-0", ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", "CREATE TABLE split_brain_probe (id int)"], check=False)
    assert refused.returncode != 0 and "read-only transaction" in refused.stderr


def test_whole_cluster_stopped_and_started_keeps_the_recorded_primary(cluster):
    runtime, _runtime_dir, pods = cluster
    primary = pods.record()["data"]["primary"]
    marker = f"restart-{time.time_ns()}"
    pods.sql(primary, f"CREATE TABLE IF NOT EXISTS restart_probe (v text); INSERT INTO restart_probe VALUES ('{marker}')")
    for pod in MEMBERS:
        runtime.cli("stop", pod)
    # Members come back in ordinal order, the former primary postgres-0 first: the record, not the
    # ordinal and not who was primary before the failover, decides who is primary.
    for pod in MEMBERS:
        runtime.cli("start", pod)
    pods.wait_healthy(primary)
    assert pods.record()["data"]["primary"] == primary
    for pod in MEMBERS:
        query = f"SELECT count(*) FROM restart_probe WHERE v = '{marker}'"
        pods.wait(f"{pod} has the row written before the stop", lambda pod=pod, query=query: pods.try_sql(pod, query) == "1")


def test_candidate_too_far_behind_is_refused_without_force(tmp_path, cluster):
    runtime, runtime_dir, pods = cluster
    primary = pods.record()["data"]["primary"]
    epoch = pods.record()["data"]["epoch"]
    behind, ahead = [pod for pod in MEMBERS if pod != primary]
    # The standby stops receiving (its walreceiver ends with an empty primary_conninfo) while the
    # other one goes on acknowledging commits (synchronous ANY 1): only the other holds them.
    pods.sql(behind, "ALTER SYSTEM SET primary_conninfo = ''")
    pods.sql(behind, "SELECT pg_reload_conf()")
    pods.wait(f"{behind} has no walreceiver", lambda: pods.try_sql(behind, "SELECT count(*) FROM pg_stat_wal_receiver") == "0")
    with Writer(cluster_conninfo(runtime_dir)) as writer:
        writer.wait_acks_after(time.monotonic(), count=50)
        runtime.cli("kill", primary, "--signal", "KILL")
        runtime.cli("stop", primary)
        refused = run_module(tmp_path, runtime_dir, module="pg_failover", candidate=behind, **CONFIRM)
        assert refused.get("failed") and refused["changed"] is False
        assert f"candidate {behind} received" in refused["msg"] and "bytes less WAL than " + ahead in refused["msg"], refused["msg"]
        gap = refused["gap_bytes"]
        assert gap > 0 and f"received {gap} bytes less" in refused["msg"]
        # Nothing changed: the record, and both standbys still in recovery.
        assert pods.record()["data"] == {"primary": primary, "epoch": epoch}
        assert [pods.sql(pod, "SELECT pg_is_in_recovery()") for pod in (behind, ahead)] == ["t", "t"]

        result = run_module(tmp_path, runtime_dir, module="pg_failover", **CONFIRM)
        assert not result.get("failed"), result.get("msg")
        assert result["new_primary"] == ahead and result["lossless"] is True
        writer.wait_acks_after(time.monotonic(), count=5)
        assert writer.missing() == []
    # The standby that fell behind is repointed and catches up; the lost primary comes back as a standby.
    runtime.cli("start", primary)
    pods.wait_healthy(ahead)


def test_primary_restarted_with_a_stale_record_does_not_start_as_a_second_primary(tmp_path, localpods_manifests):
    # Its own runtime: ConfigMap volumes are never refreshed in a running pod (kubelet refreshes
    # them only every minute or so), and a crashed container comes back after a long back-off,
    # so the lost primary's container restarts after the failover and still reads the old record:
    # its own name, with the epoch it is configured for.
    runtime = LocalPods(localpods_cli.up(localpods_manifests, None, None, 240, True, ["--config-refresh=3600", "--backoff-initial=20", "--backoff-max=20"]))
    try:
        runtime_dir = runtime.runtime_dir
        pods = Pods(runtime_dir)
        pods.wait_healthy("postgres-0")
        runtime.cli("kill", "postgres-0", "--signal", "KILL")
        result = run_module(tmp_path, runtime_dir, module="pg_failover", **CONFIRM)
        assert not result.get("failed"), result.get("msg")
        new = result["new_primary"]
        marker = "not starting as a second primary"
        pods.wait(
            "postgres-0's container to restart",
            lambda: marker in runtime.log("postgres-0") or pods.try_sql("postgres-0", "SELECT pg_is_in_recovery()") is not None,
            timeout=60,
        )
        assert pods.try_sql("postgres-0", "SELECT pg_is_in_recovery()") != "f", "the former primary started as a second primary"
        assert marker in runtime.log("postgres-0")
        assert pods.primaries() == [new]
        # A new pod gets fresh volumes: it reads the record as it is and rejoins as a standby.
        runtime.cli("delete-pod", "postgres-0")
        pods.wait_healthy(new)
        assert pods.sql("postgres-0", "SELECT pg_is_in_recovery()") == "t"
    finally:
        _down_all([(runtime, set())])
