# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the failover tests do to a cluster of the local pod runtime (cut a standby off, lose a
member in one of several ways, bring everything back) and how they run the playbooks."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from typing import Iterator

from test_switchover import CTL, REPO, Pods

from tests.localpods.fixtures import LocalPods

#: The ways a member is lost: its pod gone, PostgreSQL stopped in its pod, every process of its pod frozen.
LOSSES = ("absent", "stopped", "frozen")


def play(name: str, runtime_dir: str, **variables) -> tuple[int, dict, str]:
    """``ansible-playbook playbooks/NAME.yml``: its exit code, the first task's result (the module's), and its output."""
    prefix = "pg_failover" if name == "failover" else "pg_status"
    # The runtime's own API server, through its admin kubeconfig: the path every user takes.
    variables = {f"{prefix}_kubeconfig": os.path.join(runtime_dir, "kubeconfig"), **variables}
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), f"playbooks/{name}.yml", "-e", json.dumps(variables)]
    completed = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    # The module's task: the first after the playbook's check of its variables.
    tasks = [task for task in report["plays"][0]["tasks"] if task["task"]["name"] != "Refuse playbook variables of the wrong type"]
    return completed.returncode, tasks[0]["hosts"]["localhost"], completed.stdout


class Cluster:
    """One runtime, its members and the moves of these tests."""

    def __init__(self, runtime: LocalPods, members: int) -> None:
        self.runtime = runtime
        self.runtime_dir = runtime.runtime_dir
        self.members = tuple(f"postgres-{ordinal}" for ordinal in range(members))
        self.pods = Pods(self.runtime_dir, self.members)

    def cli(self, *args: str) -> None:
        self.runtime.cli(*args)

    def ctl(self, pod: str, *args: str) -> str:
        return self.pods.run(pod, [CTL, *args]).stdout

    def cut_from_primary(self, pod: str) -> None:
        """The standby's walreceiver ends and stays down: it receives nothing more."""
        self.pods.sql(pod, "ALTER SYSTEM SET primary_conninfo = ''")
        self.pods.sql(pod, "SELECT pg_reload_conf()")
        self.pods.wait(f"{pod} has no walreceiver", lambda: self.pods.try_sql(pod, "SELECT count(*) FROM pg_stat_wal_receiver") == "0")

    def lose_primary(self, primary: str) -> None:
        self.cli("kill", primary, "--signal", "KILL")
        self.cli("stop", primary)

    def lose(self, pod: str, how: str) -> None:
        if how == "absent":
            self.cli("stop", pod)
        elif how == "stopped":
            # The pod stays; PostgreSQL in it is stopped and kept so (held, as by an operation).
            self.ctl(pod, "stop", "30")
        elif how == "frozen":
            self.cli("freeze", pod)
        else:
            raise ValueError(how)

    def recover(self, pod: str, how: str) -> None:
        if how == "absent":
            self.cli("start", pod)
        elif how == "stopped":
            self.ctl(pod, "release")
        else:
            self.cli("thaw", pod)

    def restore(self, primary: str, epoch: str) -> None:
        """Back to healthy with ``primary``: every member started and following it."""
        for pod in self.members:
            self.cli("start", pod)
        for pod in self.members:
            if pod != primary:
                self.pods.wait(f"{pod} answers", lambda pod=pod: self.pods.try_sql(pod, "SELECT 1") == "1")
                self.ctl(pod, "follow", primary, epoch)
        self.pods.wait_healthy(primary)


@contextlib.contextmanager
def running_cluster(manifest_dir: str, members: int) -> Iterator[Cluster]:
    """A runtime of ``manifest_dir`` healthy with postgres-0 primary, brought down at the end."""
    runtime = LocalPods.start(manifest_dir)
    try:
        cluster = Cluster(runtime, members)
        cluster.pods.wait_healthy("postgres-0")
        yield cluster
    finally:
        runtime.down()
