# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_switchover through ansible-playbook against a real 3-member cluster of the local pod runtime,
with a writer that records every acknowledged commit running through every switchover.

What each test checks comes from the servers themselves (pg_is_in_recovery, pg_stat_replication,
timelines, the writer's table), never from the module's own report alone. The split-brain test
leaves the cluster broken and runs last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from writer import Writer, cluster_conninfo  # noqa: E402

from tests.localpods.fixtures import process_table  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CTL = "/etc/postgresql/scripts/ctl.sh"
MEMBERS = ("postgres-0", "postgres-1", "postgres-2")
SETTLE_SECONDS = 90
# Short budgets keep a killed run's lease short-lived, so that the rerun need not wait long.
FAST = {"lease_seconds": 2, "stop_timeout": 20, "promote_timeout": 20, "rejoin_timeout": 60, "exec_timeout": 20}


class Pods:
    def __init__(self, runtime_dir: str, members: tuple[str, ...] = MEMBERS) -> None:
        self.runtime_dir = runtime_dir
        self.members = members
        with open(os.path.join(runtime_dir, "runtime.json"), encoding="utf-8") as runtime_file:
            self.exec_argv = json.load(runtime_file)["exec_argv"]

    def run(self, pod: str, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        completed = subprocess.run(self.exec_argv + [pod, "--"] + argv, capture_output=True, text=True, timeout=120, check=False)
        if check and completed.returncode != 0:
            raise AssertionError(f"{pod}: {argv} exited {completed.returncode}: {completed.stderr}")
        return completed

    def sql(self, pod: str, sql: str) -> str:
        return self.run(pod, ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql]).stdout.strip()

    def try_sql(self, pod: str, sql: str) -> str | None:
        completed = self.run(pod, ["psql", "-X", "-A", "-t", "-d", "postgres", "-c", sql], check=False)
        return completed.stdout.strip() if completed.returncode == 0 else None

    def wait(self, what: str, check, timeout: float = SETTLE_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def logs(self, lines: int = 60) -> str:
        """The end of every member's container log, for failure messages."""
        out = []
        for pod in self.members:
            path = os.path.join(self.runtime_dir, "pods", pod, "logs", "postgres.log")
            try:
                with open(path, encoding="utf-8", errors="replace") as log_file:
                    tail = log_file.read().splitlines()[-lines:]
            except OSError as exc:
                tail = [str(exc)]
            out.append(f"--- {pod}\n" + "\n".join(tail))
        return "\n".join(out)

    def primaries(self) -> list[str]:
        return [pod for pod in self.members if self.try_sql(pod, "SELECT pg_is_in_recovery()") == "f"]

    def record(self) -> dict:
        with open(os.path.join(self.runtime_dir, "api", "postgres", "configmap", "postgres-primary.json"), encoding="utf-8") as record_file:
            return json.load(record_file)

    def wait_healthy(self, primary: str) -> None:
        """One primary, every other member streaming from it."""
        others = [pod for pod in self.members if pod != primary]
        names = ", ".join(f"'{pod}'" for pod in others)
        self.wait(
            f"{primary} alone primary with {others} streaming",
            lambda: self.primaries() == [primary]
            and self.try_sql(primary, f"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN ({names})")
            == str(len(others)),
        )


def playbook(tmp_path, module: str, args: dict, check: bool = False) -> tuple[list[str], str, dict]:
    result_file = tmp_path / f"result-{time.monotonic_ns()}.json"
    path = tmp_path / f"play-{time.monotonic_ns()}.yml"
    path.write_text(
        json.dumps(
            [
                {
                    "name": module,
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {"name": "Run", f"dbonk8s.postgresql.{module}": args, "register": "out", "ignore_errors": True},
                        {
                            "name": "Save",
                            "ansible.builtin.copy": {"content": "{{ out | to_json }}", "dest": str(result_file), "mode": "0600"},
                            "check_mode": False,
                        },
                    ],
                }
            ]
        )
    )
    argv = ["ansible-playbook", str(path)] + (["--check", "--diff"] if check else [])
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"))
    return argv, str(result_file), env


def run_module(tmp_path, runtime_dir: str, module: str = "pg_switchover", check: bool = False, **args) -> dict:
    argv, result_file, env = playbook(tmp_path, module, {"kubeconfig": os.path.join(runtime_dir, "kubeconfig"), **args}, check=check)
    completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    with open(result_file, encoding="utf-8") as handle:
        return json.load(handle)


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, parents first. ansible-playbook's workers call setsid(), so
    the module process is not in ansible-playbook's process group: signals go to the tree."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _started) in process_table().items():
        children.setdefault(ppid, []).append(pid)
    order, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        order.append(pid)
        queue += children.get(pid, [])
    return order


def signal_tree(root: int, signum: int) -> None:
    # Twice: a process may have started a child between the listing and the signal.
    for _attempt in range(2):
        for pid in process_tree(root):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def lease_annotations(pods: "Pods") -> dict:
    return pods.record()["metadata"].get("annotations") or {}


def start_module(tmp_path, runtime_dir: str, module: str = "pg_switchover", **args) -> tuple[subprocess.Popen, str]:
    argv, result_file, env = playbook(tmp_path, module, {"kubeconfig": os.path.join(runtime_dir, "kubeconfig"), **args})
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    return proc, result_file


@pytest.fixture(scope="module")
def cluster(local_cluster):
    runtime_dir = getattr(local_cluster, "runtime_dir", None) or str(local_cluster)
    pods = Pods(runtime_dir)
    pods.wait_healthy("postgres-0")
    return runtime_dir, pods


@pytest.fixture
def writer(cluster):
    runtime_dir, _pods = cluster
    with Writer(cluster_conninfo(runtime_dir)) as running:
        yield running
    assert running.missing() == [], "acknowledged commits lost"


def switch(tmp_path, cluster, writer: Writer, candidate: str) -> dict:
    runtime_dir, pods = cluster
    before = pods.sql(candidate, "SELECT received_tli FROM pg_stat_wal_receiver")
    started = time.monotonic()
    result = run_module(tmp_path, runtime_dir, candidate=candidate, **FAST)
    assert not result.get("failed"), f"{result.get('msg')}\n{pods.logs()}"
    assert result["changed"] is True and result["new_primary"] == candidate
    assert result["timeline"] == int(before) + 1
    pods.wait_healthy(candidate)
    writer.wait_acks_after(time.monotonic(), count=5)
    assert writer.acked_since(started) > 0
    # The server's own timeline agrees with the module's report.
    assert pods.sql(candidate, "SELECT timeline_id FROM pg_control_checkpoint()") in (str(result["timeline"]), before)
    return result


def test_switchover_and_back_under_writes(tmp_path, cluster, writer):
    runtime_dir, pods = cluster
    result = switch(tmp_path, cluster, writer, "postgres-1")
    assert [step["name"] for step in result["steps"]] == [
        "preflight", "lease", "checkpoint", "stop", "verify", "record", "promote", "route", "repoint", "rejoin", "wait", "release",
    ]
    assert result["write_unavailable_ms"] > 0 and result["switchover_lsn"]
    # The old primary streams from the new one.
    assert pods.sql("postgres-0", "SELECT status || ' ' || split_part(sender_host, '.', 1) FROM pg_stat_wal_receiver") == "streaming postgres-1"
    assert pods.record()["data"] == {"primary": "postgres-1", "epoch": str(result["epoch"])}
    with open(os.path.join(runtime_dir, "api", "postgres", "service", "postgres-rw.json"), encoding="utf-8") as service:
        assert json.load(service)["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "postgres-1"

    back = switch(tmp_path, cluster, writer, "postgres-0")
    assert back["previous_primary"] == "postgres-1" and back["epoch"] == result["epoch"] + 1
    assert writer.missing() == []

    again = run_module(tmp_path, runtime_dir, candidate="postgres-0", **FAST)
    assert again["changed"] is False and not again.get("failed")


def test_check_mode_changes_nothing(tmp_path, cluster):
    runtime_dir, pods = cluster
    record = pods.record()
    timeline = pods.sql("postgres-0", "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
    result = run_module(tmp_path, runtime_dir, check=True, candidate="postgres-2")
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["candidate"] == "postgres-2"
    assert result["plan"][0]["step"] == "preflight"
    assert result["diff"]["after"]["primary"] == "postgres-2"
    assert pods.primaries() == ["postgres-0"]
    assert pods.record() == record
    assert pods.sql("postgres-0", "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int") == timeline
    assert pods.sql("postgres-2", "SELECT pg_is_in_recovery()") == "t"


def test_playbooks_in_check_mode_print_the_plan_and_change_nothing(tmp_path, cluster):
    runtime_dir, pods = cluster
    record = pods.record()
    kubeconfig = os.path.join(runtime_dir, "kubeconfig")
    local = ["-e", f"pg_switchover_kubeconfig={kubeconfig}", "-e", f"pg_failover_kubeconfig={kubeconfig}"]
    _argv, _result, env = playbook(tmp_path, "pg_switchover", {})
    printed = {}
    for name, extra in (("switchover", ["-e", "candidate=postgres-2"]), ("failover", [])):
        argv = ["ansible-playbook", os.path.join("playbooks", f"{name}.yml"), "--check", "--diff", *local, *extra]
        completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=600, check=False)
        output = completed.stdout + completed.stderr
        assert completed.returncode == 0 and "Traceback" not in output, output
        printed[name] = output
    assert "primary: postgres-0 -> postgres-2" in printed["switchover"] and "check mode" in printed["switchover"], printed["switchover"]
    assert "nothing to fail over: postgres-0 is running as primary" in printed["failover"], printed["failover"]
    assert "-> postgres-0" not in printed["failover"]
    # The plan, with the cluster's own object names, without -v.
    assert "record: ConfigMap postgres-primary names the candidate" in printed["switchover"], printed["switchover"]
    assert "<name>" not in printed["switchover"] + printed["failover"]
    assert pods.primaries() == ["postgres-0"]
    assert pods.record() == record


def test_lagging_and_stopped_candidates_are_refused(tmp_path, cluster):
    runtime_dir, pods = cluster
    record = pods.record()
    pods.sql("postgres-1", "SELECT pg_wal_replay_pause()")
    try:
        pods.sql("postgres-0", "CREATE TABLE IF NOT EXISTS lag_probe AS SELECT g FROM generate_series(1, 50000) g")
        result = run_module(tmp_path, runtime_dir, candidate="postgres-1", max_lag_bytes=65536)
        assert result.get("failed")
        assert "replay is paused on candidate postgres-1" in result["msg"]
    finally:
        pods.sql("postgres-1", "SELECT pg_wal_replay_resume()")
    pods.run("postgres-2", [CTL, "stop"])
    try:
        result = run_module(tmp_path, runtime_dir, candidate="postgres-2")
        assert result.get("failed") and "candidate postgres-2 is not running" in result["msg"]
    finally:
        pods.run("postgres-2", [CTL, "release"])
    assert pods.record() == record
    pods.wait_healthy("postgres-0")


def test_concurrent_runs_one_is_refused_naming_the_holder(tmp_path, cluster, writer):
    runtime_dir, pods = cluster
    stale = lease_annotations(pods).get("dbonk8s.io/lease-holder")
    # A lease and timeouts that outlive the freeze below: the second run must find the lease live,
    # and the first one's commands must not time out while it is frozen.
    patient = {**FAST, "lease_seconds": 600, "exec_timeout": 300, "stop_timeout": 300, "promote_timeout": 300}
    first, first_result = start_module(tmp_path, runtime_dir, candidate="postgres-1", **patient)
    try:
        holder = None
        deadline = time.monotonic() + 120
        while holder in (None, stale) and time.monotonic() < deadline and first.poll() is None:
            holder = lease_annotations(pods).get("dbonk8s.io/lease-holder")
            time.sleep(0.005)
        assert holder not in (None, stale), "the first run never took the lease"
        # Freeze the first run while it holds the lease: the second one must see it, whatever the timing.
        signal_tree(first.pid, signal.SIGSTOP)
        try:
            second = run_module(tmp_path, runtime_dir, candidate="postgres-2", **FAST)
        finally:
            signal_tree(first.pid, signal.SIGCONT)
        assert second.get("failed")
        assert "another operation holds the lease" in second["msg"] and holder in second["msg"]
        assert second["lease"]["holder"] == holder
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            signal_tree(first.pid, signal.SIGKILL)
    with open(first_result, encoding="utf-8") as handle:
        done = json.load(handle)
    assert not done.get("failed"), done.get("msg")
    pods.wait_healthy("postgres-1")
    back = run_module(tmp_path, runtime_dir, candidate="postgres-0", **FAST)
    assert not back.get("failed"), back.get("msg")
    pods.wait_healthy("postgres-0")


def lease_expires(pods: Pods) -> float:
    annotations = pods.record()["metadata"].get("annotations") or {}
    expires = annotations.get("dbonk8s.io/lease-expires")
    if not expires:
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()


# The lease names the step in progress; promote, route and repoint run at once. The verify step
# writes no lease (the stop's covers it), so it never appears there.
@pytest.mark.parametrize("step", ["checkpoint", "stop", "record", "promote+route+repoint", "rejoin", "wait"])
def test_killed_at_a_step_then_rerun_converges(tmp_path, cluster, writer, step):
    runtime_dir, pods = cluster
    # The lease is sampled, so a short step can pass between two samples: the run then completes,
    # and the next attempt switches over again (from the new primary) until one is caught at the step.
    for _attempt in range(3):
        current = pods.primaries()
        assert len(current) == 1
        candidate = "postgres-1" if current == ["postgres-0"] else "postgres-0"
        stale = lease_annotations(pods).get("dbonk8s.io/lease-holder")
        proc, result_file = start_module(tmp_path, runtime_dir, candidate=candidate, **FAST)
        caught = False
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                lease = lease_annotations(pods)
                if lease.get("dbonk8s.io/lease-holder") not in (None, stale) and lease.get("dbonk8s.io/lease-step") == step:
                    signal_tree(proc.pid, signal.SIGKILL)
                    caught = True
                    break
                time.sleep(0.002)
        finally:
            if proc.poll() is None:
                signal_tree(proc.pid, signal.SIGKILL)
            proc.wait()
        if caught:
            break
        with open(result_file, encoding="utf-8") as handle:
            completed = json.load(handle)
        assert not completed.get("failed"), f"the run failed before step {step}: {completed.get('msg')}"
        pods.wait_healthy(candidate)
    else:
        pytest.fail(f"three runs passed step {step} between two samples of the lease")
    assert len(pods.primaries()) <= 1
    time.sleep(max(0.0, lease_expires(pods) - time.time()) + 0.2)
    result = run_module(tmp_path, runtime_dir, candidate=candidate, **FAST)
    assert not result.get("failed"), f"{result.get('msg')}\n{pods.logs()}"
    pods.wait_healthy(candidate)
    writer.wait_acks_after(time.monotonic(), count=5)
    assert writer.missing() == []


def test_two_primaries_are_refused(tmp_path, cluster):
    """Breaks the cluster: runs last."""
    runtime_dir, pods = cluster
    (primary,) = pods.primaries()
    other = next(pod for pod in MEMBERS if pod != primary)
    pods.sql(other, "SELECT pg_promote()")
    pods.wait("a second primary", lambda: len(pods.primaries()) == 2)
    record = pods.record()
    result = run_module(tmp_path, runtime_dir, candidate=next(pod for pod in MEMBERS if pod not in (primary, other)))
    assert result.get("failed") and "split brain" in result["msg"]
    assert pods.record() == record
    assert sorted(pods.primaries()) == sorted([primary, other])
