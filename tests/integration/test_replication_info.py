# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_replication_info through ansible-playbook against a real 3-member cluster of the local pod
runtime (PostgreSQL 15 run from the role's rendered manifests).

The cluster is changed only through what a DBA would do in the pods (``exec`` of psql, the
supervisor's ``hold`` marker of the contract in docs/architecture.md), so these tests rely on the
runtime for nothing but running the pods. The split-brain test breaks the cluster beyond repair and
runs last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.localpods.fixtures import eventually

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = "/var/run/postgresql/hold"
# Polling deadlines for the cluster to settle (never asserted as timings).
SETTLE_SECONDS = 90


def wait_sql(cluster, pod: str, sql: str) -> None:
    """Until ``sql`` returns true in ``pod`` (the cluster settling, not a timing under test)."""

    def holds() -> bool:
        result = cluster.exec(pod, "psql", "-X", "-A", "-t", "-d", "postgres", "-c", sql, check=False)
        return result.returncode == 0 and result.stdout.strip() == "t"

    eventually(holds, timeout=SETTLE_SECONDS, interval=0.5, message=f"{pod}: {sql}")


def run_info(tmp_path, runtime_dir: str, **module_args) -> dict:
    """Run the module in a playbook; return its result (failed or not) from the json callback."""
    args = {"transport": "local", "local_runtime_dir": runtime_dir, **module_args}
    playbook = tmp_path / "info.yml"
    play = {
        "name": "Replication info",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{"name": "Read", "dbonk8s.postgresql.pg_replication_info": args, "ignore_errors": True}],
    }
    playbook.write_text(json.dumps([play]))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    completed = subprocess.run([ansible_playbook, str(playbook)], cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    return json.loads(completed.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


@pytest.fixture(scope="module")
def cluster(local_cluster):
    """A running 3-member cluster of the local pod runtime (tests/localpods), both standbys streaming."""
    for standby in ("postgres-1", "postgres-2"):
        wait_sql(local_cluster, "postgres-0", f"SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = '{standby}' AND state = 'streaming'")
    return local_cluster


def test_healthy_cluster(tmp_path, cluster):
    runtime_dir = cluster.runtime_dir
    cluster.psql("postgres-0", "CHECKPOINT")
    result = run_info(tmp_path, runtime_dir, wait_for={"min_streaming": 2, "min_sync": 1, "max_lag_bytes": 0, "timeout": 60, "interval": 1})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    cluster_view, members = result["cluster"], result["members"]
    assert cluster_view["primary"] == "postgres-0"
    assert cluster_view["healthy"] is True, cluster_view["reasons"]
    assert cluster_view["streaming_standbys"] == 2
    assert cluster_view["sync_standbys"] >= 1
    assert (cluster_view["split_brain"], cluster_view["timeline_divergence"]) == (False, False)
    assert [m["name"] for m in members] == ["postgres-0", "postgres-1", "postgres-2"]
    assert [m["role"] for m in members] == ["primary", "standby", "standby"]
    primary = members[0]
    assert primary["in_recovery"] is False and primary["current_lsn"] and primary["timeline"] == cluster_view["timeline"]
    assert primary["archiver"]["archived_count"] >= 0 and isinstance(primary["slots"], list)
    for standby in members[1:]:
        assert standby["in_recovery"] is True
        assert (standby["receive_lag_bytes"], standby["replay_lag_bytes"]) == (0, 0)
        assert standby["replay_delay_seconds"] == 0
        assert standby["wal_receiver_status"] == "streaming"
        assert standby["upstream_host"].split(".")[0] == "postgres-0"
        assert standby["sync_state"] in ("sync", "quorum", "potential", "async")
        assert standby["replay_paused"] is False
        assert standby["pod_phase"] == "Running" and standby["pod_ready"] is True
        assert standby["timeline"] == primary["timeline"]
    assert result["summary"][-1] == "healthy"
    assert any(line.startswith("| postgres-0 ") and "Primary" in line for line in result["summary"])


def test_replay_paused_standby(tmp_path, cluster):
    runtime_dir = cluster.runtime_dir
    cluster.psql("postgres-1", "SELECT pg_wal_replay_pause()")
    try:
        cluster.psql("postgres-0", "CREATE TABLE IF NOT EXISTS replay_paused_probe (id int, pad text)")
        cluster.psql("postgres-0", "INSERT INTO replay_paused_probe SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g")
        written = cluster.psql("postgres-0", "SELECT pg_current_wal_lsn()")
        wait_sql(cluster, "postgres-1", f"SELECT pg_last_wal_receive_lsn() >= '{written}'::pg_lsn")
        result = run_info(tmp_path, runtime_dir)
        paused = result["members"][1]
        assert paused["replay_paused"] is True
        assert paused["state"].endswith("(replay paused)")
        assert paused["replay_lag_bytes"] > 256 * 1024  # 5000 rows of 200 bytes, not replayed
        assert paused["receive_lag_bytes"] < paused["replay_lag_bytes"] // 10
        assert "replay is paused on postgres-1" in result["cluster"]["reasons"]
        assert result["members"][2]["replay_lag_bytes"] < paused["replay_lag_bytes"]
    finally:
        cluster.psql("postgres-1", "SELECT pg_wal_replay_resume()")
    result = run_info(tmp_path, runtime_dir, wait_for={"max_lag_bytes": 0, "min_streaming": 2, "timeout": 60, "interval": 1})
    assert result["wait_for"]["met"] is True, result.get("msg")


def test_stopped_standby(tmp_path, cluster):
    runtime_dir = cluster.runtime_dir
    # The supervisor keeps a held member stopped (docs/architecture.md, "fencing").
    cluster.exec("postgres-2", "sh", "-c", f'touch {HOLD} && pg_ctl stop -m fast -w -D "$PGDATA"')
    try:
        result = run_info(tmp_path, runtime_dir, wait_for={"min_streaming": 2, "timeout": 3, "interval": 1})
        assert result["failed"] is True
        assert result["msg"].startswith("wait_for not met within 3s: min_streaming=2 (streaming standbys: 1)")
        assert "postgres-2" in result["msg"]
        stopped = result["members"][2]
        assert stopped["role"] == "down"
        assert stopped["state"] == "stopped"
        assert result["cluster"]["down"] == ["postgres-2"]
        assert result["cluster"]["healthy"] is False
        assert any(reason.startswith("postgres-2 is down") for reason in result["cluster"]["reasons"])
        assert result["cluster"]["streaming_standbys"] == 1
    finally:
        cluster.exec("postgres-2", "rm", "-f", HOLD)
    result = run_info(tmp_path, runtime_dir, wait_for={"min_streaming": 2, "timeout": SETTLE_SECONDS, "interval": 1})
    assert result["wait_for"]["met"] is True, result.get("msg")


def test_manual_promotion_is_split_brain(tmp_path, cluster):
    runtime_dir = cluster.runtime_dir
    cluster.psql("postgres-2", "SELECT pg_promote(true, 60)")
    result = run_info(tmp_path, runtime_dir)
    cluster_view = result["cluster"]
    assert cluster_view["split_brain"] is True
    assert cluster_view["primaries"] == ["postgres-0", "postgres-2"]
    assert cluster_view["primary"] == "postgres-0"  # the record of the primary still names it
    assert cluster_view["healthy"] is False
    assert cluster_view["timeline_divergence"] is True
    assert result["members"][2]["role"] == "primary"
    assert any(reason.startswith("split brain: postgres-0, postgres-2") for reason in cluster_view["reasons"])
