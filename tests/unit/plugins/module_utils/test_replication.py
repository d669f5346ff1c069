# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Status assembly from probes shaped like the output of STATUS_SQL on PostgreSQL 15."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _replication
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ClusterBackend,
    ExecLost,
    ExecResult,
    ExecTimeout,
    PodUnavailable,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._replication import (
    assemble,
    probe_member,
    psql_argv,
    unmet_conditions,
    upstream_host,
    wait_until,
)

SYSID = "7712541593763108730"


def pod_summary(name: str, ready: bool = True, phase: str = "Running", ordinal_ip: int = 10) -> dict:
    return {"name": name, "phase": phase, "ready": ready, "restarts": 0, "pod_ip": f"127.0.0.{ordinal_ip}", "terminating": False, "labels": {}}


def primary_status(lsn: str = "0/4635758", timeline: int = 1, rows: list | None = None) -> dict:
    return {
        "server_version_num": 150018,
        "system_identifier": SYSID,
        "in_recovery": False,
        "current_lsn": lsn,
        "timeline": timeline,
        "receive_lsn": None,
        "replay_lsn": None,
        "replay_paused": None,
        "replay_delay_seconds": None,
        "last_replay_timestamp": None,
        "wal_receiver": None,
        "replication": rows if rows is not None else [replication_row("postgres-1"), replication_row("postgres-2")],
        "slots": [],
        "archive_mode": "on",
        "archiver": {
            "archived_count": 5,
            "last_archived_wal": "000000010000000000000004",
            "last_archived_time": "2026-11-26T18:00:25.840839+00:00",
            "failed_count": 0,
            "last_failed_wal": None,
            "last_failed_time": None,
        },
        "synchronous_standby_names": 'ANY 1 ("postgres-0", "postgres-1", "postgres-2")',
        "pending_restart": [],
    }


def replication_row(name: str, state: str = "streaming", sync_state: str = "quorum", client_addr: str | None = None) -> dict:
    return {
        "application_name": name,
        "client_addr": client_addr,
        "state": state,
        "sync_state": sync_state,
        "sync_priority": 1,
        "sent_lsn": "0/4635758",
        "write_lsn": "0/4635758",
        "flush_lsn": "0/4635758",
        "replay_lsn": "0/4635758",
        "replay_lag_seconds": None,
    }


def standby_status(
    receive: str = "0/4635758", replay: str = "0/4635758", timeline: int = 1, paused: bool = False, receiver: str | None = "streaming", delay: float = 0
) -> dict:
    return {
        "server_version_num": 150018,
        "system_identifier": SYSID,
        "in_recovery": True,
        "current_lsn": None,
        "timeline": timeline,
        "receive_lsn": receive,
        "replay_lsn": replay,
        "replay_paused": paused,
        "replay_delay_seconds": delay,
        "last_replay_timestamp": "2026-11-26T18:00:25+00:00",
        "wal_receiver": None
        if receiver is None
        else {
            "status": receiver,
            "sender_host": "127.0.0.10",
            "sender_port": 5432,
            "conninfo": (
                "user=replicator passfile=/var/run/postgresql/.pgpass dbname=replication host=postgres-0.postgres port=5432 application_name=postgres-1"
            ),
            "slot_name": None,
            "flushed_lsn": receive,
            "received_tli": timeline,
            "last_msg_receipt_time": "2026-11-26T18:00:25+00:00",
        },
        "replication": [],
        "slots": [],
        "archive_mode": "on",
        "archiver": None,
        "synchronous_standby_names": "",
        "pending_restart": [],
    }


def probe(name: str, status: dict | None, state: str | None = None, error: str | None = None, ready: bool = True, ip: int = 10) -> dict:
    return {"pod": pod_summary(name, ready=ready, ordinal_ip=ip), "status": status, "error": error, "reachable": status is not None, "state": state}


def healthy_probes() -> list[dict]:
    return [
        probe("postgres-0", primary_status(), ip=10),
        probe("postgres-1", standby_status(), ip=11),
        probe("postgres-2", standby_status(), ip=12),
    ]


def view(probes: list[dict], **kwargs) -> dict:
    kwargs.setdefault("recorded_primary", "postgres-0")
    kwargs.setdefault("rw_service_target", "postgres-0")
    return assemble(probes, cluster_name="postgres", namespace="postgres", **kwargs)


def test_healthy_cluster():
    state = view(healthy_probes())
    cluster = state["cluster"]
    assert cluster["healthy"] is True, cluster["reasons"]
    assert cluster["primary"] == "postgres-0"
    assert (cluster["streaming_standbys"], cluster["sync_standbys"], cluster["standbys"]) == (2, 2, 2)
    assert cluster["max_replay_lag_bytes"] == 0
    assert [m["role"] for m in state["members"]] == ["primary", "standby", "standby"]
    standby = state["members"][1]
    assert (standby["sync_state"], standby["replication_state"], standby["state"]) == ("quorum", "streaming", "streaming")
    assert standby["upstream_host"] == "postgres-0.postgres"
    assert cluster["summary"][-1] == "healthy"
    assert any(line.startswith("| postgres-1 ") and "Standby" in line and "quorum" in line for line in cluster["summary"])


def test_lags_are_against_the_primary_current_lsn():
    probes = healthy_probes()
    probes[0]["status"]["current_lsn"] = "1/00000100"
    probes[1]["status"].update(receive_lsn="1/00000000", replay_lsn="0/FFFFFF00")
    state = view(probes)
    standby = state["members"][1]
    assert standby["receive_lag_bytes"] == 0x100
    assert standby["replay_lag_bytes"] == 0x200
    assert state["cluster"]["max_replay_lag_bytes"] == 0x1_0000_0100 - 0x4635758  # postgres-2 is further behind


def test_standby_probed_after_primary_has_no_negative_lag():
    probes = healthy_probes()
    probes[1]["status"].update(receive_lsn="0/4635800", replay_lsn="0/4635800")
    standby = view(probes)["members"][1]
    assert (standby["receive_lag_bytes"], standby["replay_lag_bytes"]) == (0, 0)


def test_receive_position_behind_replay_after_restart_counts_as_replayed():
    probes = healthy_probes()
    probes[1]["status"].update(receive_lsn="0/4000000", replay_lsn="0/4635758")
    assert view(probes)["members"][1]["receive_lag_bytes"] == 0


def test_stopped_standby_is_down_and_unhealthy():
    probes = healthy_probes()
    probes[2] = probe("postgres-2", None, state="stopped", error='psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed')
    probes[0]["status"]["replication"] = [replication_row("postgres-1")]
    state = view(probes)
    cluster = state["cluster"]
    assert state["members"][2]["role"] == "down"
    assert cluster["down"] == ["postgres-2"]
    assert cluster["healthy"] is False
    assert any(reason.startswith("postgres-2 is down: psql: error") for reason in cluster["reasons"])
    assert cluster["streaming_standbys"] == 1


def test_unknown_member():
    probes = healthy_probes()
    probes[1] = probe("postgres-1", None, state="unknown", error="exec in pod postgres-1: no exit status within 15s")
    state = view(probes)
    assert state["members"][1]["role"] == "unknown"
    assert state["cluster"]["unknown"] == ["postgres-1"]
    assert "postgres-1 is in an unknown state: exec in pod postgres-1: no exit status within 15s" in state["cluster"]["reasons"]


def test_split_brain_prefers_the_recorded_primary_and_flags_divergence():
    probes = healthy_probes()
    probes[1] = probe("postgres-1", primary_status(lsn="0/5000000", timeline=2, rows=[]), ip=11)
    state = view(probes)
    cluster = state["cluster"]
    assert cluster["split_brain"] is True
    assert cluster["primaries"] == ["postgres-0", "postgres-1"]
    assert cluster["primary"] == "postgres-0"
    assert cluster["timeline_divergence"] is True
    assert cluster["healthy"] is False
    assert any("split brain" in reason for reason in cluster["reasons"])


def test_split_brain_without_record_picks_the_newest_timeline():
    probes = healthy_probes()
    probes[2] = probe("postgres-2", primary_status(lsn="0/5000000", timeline=2, rows=[]), ip=12)
    assert view(probes, recorded_primary=None)["cluster"]["primary"] == "postgres-2"


def test_no_primary():
    probes = [probe("postgres-0", None, state="stopped", error="down"), probe("postgres-1", standby_status(receiver=None), ip=11)]
    state = view(probes)
    assert state["cluster"]["primary"] is None
    assert "no primary: no member is out of recovery" in state["cluster"]["reasons"]
    assert state["members"][1]["replay_lag_bytes"] is None
    assert state["members"][1]["state"] == "in archive recovery"


def test_replay_paused_standby():
    probes = healthy_probes()
    probes[1]["status"].update(receive_lsn="0/4635758", replay_lsn="0/4000000", replay_paused=True, replay_delay_seconds=4.1)
    state = view(probes)
    standby = state["members"][1]
    assert standby["replay_lag_bytes"] == 0x635758
    assert standby["receive_lag_bytes"] == 0
    assert standby["state"] == "streaming (replay paused)"
    assert "replay is paused on postgres-1" in state["cluster"]["reasons"]


def test_standby_not_listed_by_the_primary():
    probes = healthy_probes()
    probes[0]["status"]["replication"] = [replication_row("postgres-1")]
    probes[2]["status"]["wal_receiver"]["status"] = "waiting"
    state = view(probes)
    assert state["cluster"]["streaming_standbys"] == 1
    assert any(reason.startswith("postgres-2 is not streaming from the primary postgres-0 (not listed") for reason in state["cluster"]["reasons"])


def test_row_found_by_pod_ip_when_application_name_is_default():
    probes = healthy_probes()
    probes[0]["status"]["replication"] = [
        replication_row("walreceiver", client_addr="127.0.0.11/32"),
        replication_row("walreceiver", client_addr="127.0.0.12/32", sync_state="async"),
    ]
    state = view(probes)
    assert [m["sync_state"] for m in state["members"]] == [None, "quorum", "async"]
    assert (state["cluster"]["streaming_standbys"], state["cluster"]["sync_standbys"]) == (2, 1)


def test_standby_following_another_member():
    probes = healthy_probes()
    probes[2]["status"]["wal_receiver"]["conninfo"] = "host='postgres-1.postgres' port=5432"
    state = view(probes)
    assert "postgres-2 follows postgres-1.postgres, not the primary postgres-0" in state["cluster"]["reasons"]


def test_records_that_disagree_with_the_primary():
    state = view(healthy_probes(), recorded_primary="postgres-1", rw_service_target="postgres-2")
    reasons = state["cluster"]["reasons"]
    assert "the record of the primary (ConfigMap postgres-primary) names postgres-1, but postgres-0 is the primary" in reasons
    assert "Service postgres-rw selects postgres-2, not the primary postgres-0" in reasons


def test_not_ready_pod_failing_archiver_and_lost_slot():
    probes = healthy_probes()
    probes[1]["pod"]["ready"] = False
    probes[0]["status"]["archiver"].update(last_failed_wal="000000010000000000000005", last_failed_time="2026-11-26T18:05:00+00:00", failed_count=3)
    probes[0]["status"]["slots"] = [{"name": "old", "type": "physical", "active": False, "wal_status": "lost", "safe_wal_size": None, "restart_lsn": None}]
    reasons = view(probes)["cluster"]["reasons"]
    assert "pod postgres-1 is not ready" in reasons
    assert "WAL archiving is failing on postgres-0 (last failed: 000000010000000000000005)" in reasons
    assert "replication slot old on postgres-0 has lost required WAL" in reasons


def test_different_database_clusters():
    probes = healthy_probes()
    probes[2]["status"]["system_identifier"] = "1"
    assert any("different database clusters" in reason for reason in view(probes)["cluster"]["reasons"])


def test_summary_is_aligned_table():
    summary = view(healthy_probes())["cluster"]["summary"]
    table = [line for line in summary if line.startswith(("|", "+"))]
    assert len({len(line) for line in table}) == 1
    assert summary[0].startswith("+ Cluster: postgres (namespace postgres) ")


@pytest.mark.parametrize(
    "conninfo, host",
    [
        ("user=r host=postgres-0.postgres port=5432", "postgres-0.postgres"),
        ("host='a b' port=1", "a b"),
        ("hostaddr=127.0.0.1 port=1", None),
        (None, None),
    ],
)
def test_upstream_host(conninfo, host):
    assert upstream_host(conninfo) == host


def test_psql_argv_is_read_only_with_statement_timeout():
    argv = psql_argv("SELECT 1", timeout=10)
    assert argv[:7] == ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    assert argv[-2:] == ["-c", "SELECT 1"]
    conninfo = argv[argv.index("-d") + 1]
    assert "default_transaction_read_only=on" in conninfo and "statement_timeout=9500" in conninfo


# -- wait_for -------------------------------------------------------------------------------


def test_unmet_conditions_name_what_is_missing():
    probes = healthy_probes()
    probes[0]["status"]["replication"] = [replication_row("postgres-1", sync_state="async")]
    probes[2]["status"].update(replay_lsn="0/4000000")
    state = view(probes)
    unmet = unmet_conditions(state, {"min_streaming": 2, "min_sync": 1, "max_lag_bytes": 1024})
    assert unmet == [
        "min_streaming=2 (streaming standbys: 1)",
        "min_sync=1 (synchronous standbys: 0)",
        f"max_lag_bytes=1024 (postgres-2: replay lag {0x635758} bytes)",
    ]
    assert unmet_conditions(view(healthy_probes()), {"min_streaming": 2, "min_sync": 2, "max_lag_bytes": 0}) == []


def test_max_lag_is_not_met_by_a_member_that_is_down_or_absent():
    from ansible_collections.dbonk8s.postgresql.plugins.module_utils._membership import membership

    probes = healthy_probes()[:2]
    probes.append(_replication.absent_probe("postgres-2", membership("postgres", {"spec": {"replicas": 3}}, [], None, [])))
    unmet = unmet_conditions(view(probes), {"max_lag_bytes": 1024})
    assert unmet == ["max_lag_bytes=1024 (postgres-2: pod absent, replay lag unknown)"]
    # The same members all answering: met.
    assert unmet_conditions(view(healthy_probes()), {"max_lag_bytes": 1024}) == []


def test_wait_until_polls_until_met():
    states = [view(copy.deepcopy(healthy_probes())), view(copy.deepcopy(healthy_probes())), view(copy.deepcopy(healthy_probes()))]
    states[0]["cluster"]["streaming_standbys"] = 0
    states[1]["cluster"]["streaming_standbys"] = 1
    observed = iter(states)
    sleeps: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    state, unmet, attempts = wait_until(lambda: next(observed), {"min_streaming": 2, "timeout": 60, "interval": 2}, sleep=sleep, clock=lambda: now[0])
    assert (unmet, attempts, sleeps) == ([], 3, [2.0, 2.0])
    assert state is states[2]


def test_wait_until_gives_up_at_the_timeout_with_the_last_state():
    state = view(healthy_probes())
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    last, unmet, attempts = wait_until(lambda: state, {"min_streaming": 3, "timeout": 5, "interval": 2}, sleep=sleep, clock=lambda: now[0])
    assert unmet == ["min_streaming=3 (streaming standbys: 2)"]
    assert attempts == 4  # at 0, 2, 4 and 5 s
    assert last is state


# -- probe_member against a scripted backend --------------------------------------------------


class ScriptedBackend(ClusterBackend):
    transport = "test"

    def __init__(self, outcome) -> None:
        super().__init__("postgres")
        self.outcome = outcome
        self.calls: list[tuple] = []

    def exec(self, pod_name, argv, timeout):
        self.calls.append((pod_name, argv, timeout))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def api_pod(name: str, phase: str = "Running") -> dict:
    return {
        "metadata": {"name": name, "labels": {"app": "postgres"}},
        "status": {
            "phase": phase,
            "podIP": "10.244.0.5",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "postgres", "ready": True, "restartCount": 2}],
        },
    }


@pytest.mark.parametrize(
    "outcome, state, reachable",
    [
        (ExecResult(0, '{"in_recovery": true}\n', ""), None, True),
        (ExecResult(2, "", 'psql: error: connection to server on socket "/x/.s.PGSQL.5432" failed: No such file or directory\n'), "stopped", False),
        (ExecResult(2, "", "psql: error: connection to server ... failed: FATAL:  the database system is starting up\n"), "starting", False),
        (ExecResult(2, "", "psql: error: ... FATAL:  the database system is shutting down\n"), "stopping", False),
        (ExecResult(2, "", "psql: error: ... failed: Connection refused\n"), "stopped", False),
        (ExecResult(2, "", 'psql: error: ... FATAL:  Peer authentication failed for user "postgres"\n'), "unknown", False),
        (ExecResult(2, "", "psql: error: ... FATAL:  sorry, too many clients already\n"), "unknown", False),
        (ExecResult(127, "", "exec: psql: not found\n"), "unknown", False),
        (ExecResult(0, "garbage", ""), "unknown", False),
        (PodUnavailable("pod postgres-1 is not available for exec"), "container not running", False),
        (ExecTimeout("no exit status within 1s"), "unknown", False),
        (ExecLost("connection lost"), "unknown", False),
    ],
)
def test_probe_member_outcomes(outcome, state, reachable):
    backend = ScriptedBackend(outcome)
    result = probe_member(backend, api_pod("postgres-1"), timeout=1)
    assert result["reachable"] is reachable
    assert result["state"] == state
    assert result["pod"]["restarts"] == 2
    assert (result["error"] is None) == reachable
    assert backend.calls[0][1][0] == "psql"


def test_probe_skips_exec_for_pods_not_running():
    backend = ScriptedBackend(ExecResult(0, "{}", ""))
    result = probe_member(backend, api_pod("postgres-2", phase="Pending"), timeout=1)
    assert result["state"] == "pod pending"
    assert backend.calls == []


def test_collect_reads_records_and_probes_in_parallel(monkeypatch):
    class Backend(ScriptedBackend):
        def find_members(self, members):
            return [api_pod("postgres-0"), api_pod("postgres-1")], {"spec": {"replicas": 2}, "status": {"replicas": 2}}

        def get_configmap(self, name):
            from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import NotFound

            if name == "postgres-config":
                raise NotFound(name)
            assert name == "postgres-primary"
            return {"data": {"primary": "postgres-0", "epoch": "3"}}

        def get_service(self, name):
            from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import NotFound

            raise NotFound(name)

    import json

    backend = Backend(ExecResult(0, json.dumps(primary_status(rows=[])), ""))
    from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import StatefulSetMembers

    state = _replication.collect(backend, StatefulSetMembers(statefulset="postgres"), 5)
    assert state["cluster"]["record_epoch"] == "3"
    assert state["cluster"]["rw_service_target"] is None
    assert state["cluster"]["split_brain"] is True  # the scripted backend answers "primary" for both
    assert len(backend.calls) == 2


def test_a_member_without_a_pod_makes_the_cluster_unhealthy():
    from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import NotFound, StatefulSetMembers

    conf = "synchronous_standby_names = 'ANY 1 (\"postgres-0\", \"postgres-1\", \"postgres-2\")'\ndbonk8s.members = 'postgres-0,postgres-1,postgres-2'\n"

    class Backend(ScriptedBackend):
        replicas = 3
        sync = 'ANY 1 ("postgres-0", "postgres-1", "postgres-2")'

        def find_members(self, members):
            return [api_pod("postgres-0"), api_pod("postgres-1")], {"spec": {"replicas": self.replicas}, "status": {"replicas": self.replicas}}

        def get_configmap(self, name):
            if name == "postgres-config":
                return {"data": {"postgresql.conf": conf}}
            raise NotFound(name)

        def get_service(self, name):
            raise NotFound(name)

        def exec(self, pod_name, argv, timeout):
            self.calls.append(pod_name)
            status = primary_status(rows=[replication_row("postgres-1")]) if pod_name == "postgres-0" else standby_status()
            return ExecResult(0, json.dumps(dict(status, synchronous_standby_names=self.sync)), "")

    import json

    backend = Backend(None)
    state = _replication.collect(backend, StatefulSetMembers(statefulset="postgres"), 5)
    cluster = state["cluster"]
    assert [member["name"] for member in state["members"]] == ["postgres-0", "postgres-1", "postgres-2"]
    assert cluster["members"] == 3 and cluster["absent"] == ["postgres-2"] and "postgres-2" in cluster["down"]
    assert cluster["healthy"] is False
    assert any(reason.startswith("postgres-2 is down: no pod (a member by StatefulSet spec.replicas=3") for reason in cluster["reasons"])
    assert sorted(backend.calls) == ["postgres-0", "postgres-1"]  # nobody execs into a pod that does not exist
    assert "| postgres-2 | Absent, not ready | down" in "\n".join(cluster["summary"])
    # Every source agrees on two members: healthy again, nothing absent.
    conf = "synchronous_standby_names = 'ANY 1 (\"postgres-0\", \"postgres-1\")'\ndbonk8s.members = 'postgres-0,postgres-1'\n"
    backend.replicas = 2
    backend.sync = 'ANY 1 ("postgres-0", "postgres-1")'
    state = _replication.collect(backend, StatefulSetMembers(statefulset="postgres"), 5)
    assert state["cluster"]["absent"] == [] and state["cluster"]["healthy"] is True, state["cluster"]["reasons"]
