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
import time

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


def ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"))


def ansible_playbook() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def run_info(tmp_path, runtime_dir: str, **module_args) -> dict:
    """Run the module in a playbook; return its result (failed or not) from the json callback."""
    args = {"kubeconfig": os.path.join(runtime_dir, "kubeconfig"), **module_args}
    playbook = tmp_path / "info.yml"
    play = {
        "name": "Replication info",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{"name": "Read", "dbonk8s.postgresql.pg_replication_info": args, "ignore_errors": True}],
    }
    playbook.write_text(json.dumps([play]))
    env = dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    completed = subprocess.run([ansible_playbook(), str(playbook)], cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
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


def test_replay_delay_does_not_grow_on_an_idle_primary(tmp_path, cluster):
    """The last replayed transaction ages on an idle cluster; nothing is behind, so the delay is 0."""
    cluster.psql("postgres-0", "CREATE TABLE IF NOT EXISTS idle_probe (id int); INSERT INTO idle_probe VALUES (1)")
    written = cluster.psql("postgres-0", "SELECT pg_current_wal_lsn()")
    for standby in ("postgres-1", "postgres-2"):
        wait_sql(cluster, standby, f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn")
    time.sleep(3)  # the cluster sits idle: no commit to replay (a state to set up, not a timing under test)
    result = run_info(tmp_path, cluster.runtime_dir)
    assert not result.get("failed"), result.get("msg")
    for standby in result["members"][1:]:
        name = standby["name"]
        assert standby["replay_delay_seconds"] == 0, name
        # Asked directly, the standby's last replayed transaction is seconds old, and it is the one
        # the module saw: no commit was replayed in between.
        age = float(cluster.psql(name, "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())"))
        assert age >= 2, f"{name}: pg_last_xact_replay_timestamp() is {age}s old"
        assert cluster.psql(name, "SELECT to_json(pg_last_xact_replay_timestamp()) #>> '{}'") == standby["last_replay_timestamp"]


@pytest.mark.parametrize("config", ["repository", "none"])
def test_status_playbook_on_the_local_runtime(cluster, config, tmp_path):
    """playbooks/status.yml against the runtime's API server prints the summary table, one line per line,
    with this repository's ansible.cfg and with Ansible's defaults (an installed collection)."""
    command = [
        ansible_playbook(),
        os.path.join(REPO, "playbooks", "status.yml"),
        "-e", f"pg_status_kubeconfig={cluster.kubeconfig}",
        "-e", "pg_status_min_streaming=2",
        "-e", "pg_status_fail_unhealthy=true",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=ansible_env(), timeout=300, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Traceback" not in output
    # One summary line per printed line (a list, whatever the callback), not one string full of \n.
    printed = [line.strip().removeprefix("- ").strip("'\"") for line in completed.stdout.splitlines()]
    assert "\\n" not in completed.stdout
    assert any(line.startswith("| postgres-0 ") and "| Primary " in line for line in printed), completed.stdout
    assert any(line.startswith("| postgres-1 ") and "| Standby " in line for line in printed), completed.stdout
    assert any(line.startswith("primary: postgres-0, streaming standbys: 2,") for line in printed), completed.stdout
    assert "healthy" in printed, completed.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ({"namespace": "no-such-namespace"}, "namespace no-such-namespace not found"),
        ({"statefulset": "no-such-statefulset"}, "StatefulSet no-such-statefulset not found in namespace postgres"),
        ({"label_selector": {"app": "no-such-app"}}, "no pods found for pods matching app=no-such-app in namespace postgres"),
    ],
    ids=["unknown-namespace", "unknown-statefulset", "selector-matching-nothing"],
)
def test_bad_target_fails_with_a_clear_message(tmp_path, cluster, args, message):
    result = run_info(tmp_path, cluster.runtime_dir, **args)
    assert result["failed"] is True
    # The module's own message, not a crash (run_info has checked the output for a traceback).
    assert result["msg"] == message


def test_statefulset_without_pods_fails_with_a_clear_message(tmp_path, localpods_factory, localpods_manifests):
    """A runtime of the same manifests scaled to 0 (no pod, no PostgreSQL: cheap)."""
    empty = localpods_factory(localpods_manifests, replicas=0)
    assert empty.pod_names() == []
    result = run_info(tmp_path, empty.runtime_dir)
    assert result["failed"] is True
    assert result["msg"] == "no pods found for StatefulSet postgres in namespace postgres"


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
