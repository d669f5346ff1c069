"""pytest fixtures of the local pod runtime, for this package's tests and for tests/integration.

- ``localpods_manifests`` (session): the role's render-only output with default variables, rendered
  once by ansible-playbook (or taken from ``$LOCALPODS_MANIFESTS`` when set, to skip rendering).
- ``localpods_factory`` (function): starts runtimes (``LocalPods``), from a manifest directory or
  empty (``None``: its controllers wait for objects in the store); brings every one it started down
  at the end and fails the test if any of their processes (every descendant of the runtime daemon,
  every process in one of its pods or in one of its cgroups) or of their cgroups is left behind.
- ``localpods_cluster`` (module): one running cluster from ``localpods_manifests``, shared by the
  tests of a module, which must leave it healthy (every member ready) for the next test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import pytest

from tests.localpods import cli
from tests.localpods.freezer import Freezer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli.py")

RENDER_PLAYBOOK = """\
- name: Render the manifests for the local pod runtime
  hosts: localhost
  gather_facts: false
  connection: local
  roles:
    - role: dbonk8s.postgresql.pg_cluster
      vars:
        pg_cluster_render_only: true
        pg_cluster_manifest_dir: "{{ localpods_manifest_dir }}"
"""


# What a DBA sets first, as a vars file has it: every member must run with these.
TUNED_PARAMETERS = {"work_mem": "64MB", "shared_buffers": "160MB", "jit": False, "random_page_cost": 1.1}
# The same as SHOW prints them.
TUNED_PARAMETERS_SHOWN = {"work_mem": "64MB", "shared_buffers": "160MB", "jit": "off", "random_page_cost": "1.1"}


def render_manifests(directory: str, extra_vars: dict[str, Any] | None = None) -> str:
    """Runs the role in render-only mode into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    playbook = os.path.join(directory, "..", os.path.basename(directory) + "-render.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(RENDER_PLAYBOOK)
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", os.path.join(REPO_ROOT, "ansible.cfg"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(REPO_ROOT, ".collections"))
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    variables = {"localpods_manifest_dir": os.path.abspath(directory), **(extra_vars or {})}
    result = subprocess.run(
        [os.path.join(bin_dir, "ansible-playbook"), playbook, "-e", json.dumps(variables)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rendering failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    return os.path.abspath(directory)


def eventually(check: Callable[[], Any], timeout: float = 90, interval: float = 0.2, message: str = "") -> Any:
    """The first truthy result of ``check``; fails the test after ``timeout`` seconds without one."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, subprocess.CalledProcessError, cli.LocalPodsError) as error:
            last_error = error
        time.sleep(interval)
    pytest.fail(f"{message or 'condition'} not reached within {timeout}s; last error: {last_error!r}")


class LocalPods:
    """A running instance of the runtime, driven through its command line like a user would."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        with open(os.path.join(state_dir, "runtime.json"), encoding="utf-8") as handle:
            self.info = json.load(handle)
        self.namespace = self.info["namespace"]
        self.statefulset = self.info["statefulset"]
        self.daemon_pid = self.info["daemon_pid"]
        self.up = True

    @property
    def runtime_dir(self) -> str:
        return self.state_dir

    @property
    def kubeconfig(self) -> str:
        """The administrator's kubeconfig of the runtime's API server."""
        return os.path.join(self.state_dir, "kubeconfig")

    def __str__(self) -> str:
        return self.state_dir

    @classmethod
    def start(
        cls, manifest_dir: str | None, replicas: int | None = None, timeout: float = 240, wait: bool = True, options: list[str] | None = None
    ) -> "LocalPods":
        """``cli.py up``, with an empty store without ``manifest_dir``; ``wait=False`` returns once the
        daemon answers, ``options`` are its timing options (``--backoff-initial=1``...)."""
        return cls(cli.up(manifest_dir, None, replicas, timeout, wait, list(options or [])))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, CLI, "--state-dir", self.state_dir, *args], capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"localpods {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def request(self, op: str, **args: Any) -> dict:
        """One request to the daemon's control socket and its answer (``ok``, ``error``, ``status``)."""
        return cli.exchange(self.state_dir, op, **args)

    def exec(self, pod: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs argv in the pod exactly as the modules do: runtime.json's exec_argv."""
        result = subprocess.run([*self.info["exec_argv"], pod, "--", *argv], capture_output=True, text=True, check=False, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"exec in {pod} {list(argv)} failed ({result.returncode}): {result.stderr}")
        return result

    def psql(self, pod: str, sql: str) -> str:
        return self.exec(pod, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-d", "postgres", "-c", sql).stdout.strip()

    def store(self):
        """The runtime's API store (LocalApiStore), as the modules see it."""
        return cli._store(self.state_dir)  # pylint: disable=protected-access

    def pod(self, name: str, namespace: str | None = None) -> dict:
        for pod in cli.pods(self.state_dir, namespace):
            if pod["metadata"]["name"] == name:
                return pod
        # An AssertionError, so that eventually() retries while a deleted pod is being recreated.
        raise AssertionError(f"no pod {name} (yet)")

    def pods(self, namespace: str | None = None, statefulset: str | None = None) -> list[dict]:
        """The Pod objects of runtime.json's StatefulSet, or of ``statefulset``, or every one of ``namespace``."""
        return cli.pods(self.state_dir, namespace, statefulset)

    def restart_count(self, name: str) -> int:
        return int(self.pod(name)["status"]["containerStatuses"][0].get("restartCount", 0))

    def wait_ready(self, replicas: int | None = None, timeout: float = 180, namespace: str | None = None, statefulset: str | None = None) -> None:
        cli.wait_ready(self.state_dir, replicas, timeout, namespace, statefulset)

    def pod_names(self, namespace: str | None = None, statefulset: str | None = None) -> list[str]:
        return [p["metadata"]["name"] for p in self.pods(namespace, statefulset)]

    def primary_and_standbys(self) -> tuple[str, list[str]]:
        primary, standbys = None, []
        for name in self.pod_names():
            if self.psql(name, "SELECT pg_is_in_recovery()") == "f":
                primary = name
            else:
                standbys.append(name)
        assert primary is not None, "no member runs as primary"
        return primary, standbys

    def streaming(self, primary: str) -> dict[str, str]:
        """application_name -> sync_state of the standbys streaming from ``primary``."""
        rows = self.psql(primary, "SELECT application_name, sync_state FROM pg_stat_replication WHERE state = 'streaming'")
        return dict(line.split("|") for line in rows.splitlines() if line)

    def log(self, pod: str, container: str = "postgres", namespace: str | None = None) -> str:
        with open(os.path.join(cli.pod_dir(self.state_dir, pod, namespace), "logs", container + ".log"), encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def volume_dir(self, claim: str, namespace: str | None = None) -> str:
        """The directory of a claim's volume (runtime.py: the runtime's own namespace at the top)."""
        if namespace is None or namespace == self.namespace:
            return os.path.join(self.state_dir, "volumes", claim)
        return os.path.join(self.state_dir, "namespaces", namespace, "volumes", claim)

    def freezer(self) -> Freezer | None:
        """The runtime's cgroups (tests/localpods/freezer.py), or None when it runs without."""
        return Freezer.recorded(self.info.get("freezer"))

    def cgroups(self) -> list[str]:
        """The runtime's cgroups that exist: its pods' and its own."""
        freezer = self.freezer()
        return freezer.existing() if freezer is not None else []

    def processes(self) -> set[tuple[int, str]]:
        """(pid, start time) of the daemon, of every process descending from it, and of every other
        process in the mount namespace of one of its pods or in one of its cgroups.

        The daemon is a child subreaper: whatever a pod runs (pause process, init containers, a
        crash-looping container, a killed postmaster's backends) stays below it. Commands run in a pod
        by ``exec`` descend from their caller instead, hence the namespaces, and the cgroups (such a
        command joins the pod's cgroup a moment before its namespace).
        """
        table = process_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _started) in table.items():
            children.setdefault(ppid, []).append(pid)
        found: set[int] = set()
        # Only while the PID is still this instance's daemon (its command line names the state directory).
        pending = [self.daemon_pid] if os.path.abspath(self.state_dir) in _command_line(self.daemon_pid) else []
        while pending:
            pid = pending.pop()
            if pid in table and pid not in found:
                found.add(pid)
                pending.extend(children.get(pid, []))
        namespaces = {_mount_namespace(pid) for pid in found}
        for pod_dir in cli.pod_dirs(self.state_dir):
            try:
                with open(os.path.join(pod_dir, "exec.json"), encoding="utf-8") as handle:
                    namespaces.add(_mount_namespace(int(json.load(handle)["pause_pid"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        # Not the namespace of the host (the daemon's and this process's): only the pods' own.
        namespaces -= {None, _mount_namespace(self.daemon_pid), _mount_namespace(os.getpid())}
        found.update(pid for pid in table if _mount_namespace(pid) in namespaces)
        freezer = self.freezer()
        if freezer is not None:
            found.update(pid for pid in freezer.all_members() if pid in table)
        return {(pid, table[pid][1]) for pid in found}

    def down(self) -> None:
        if self.up:
            cli.down(self.state_dir)
            self.up = False


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, parent pid, ...; start time at
    index 19), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process of the machine."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        fields = _stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None:
            table[int(entry)] = (int(fields[1]), fields[19])
    return table


def _command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [arg.decode(errors="replace") for arg in handle.read().split(b"\0")]
    except OSError:
        return []


def _mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def still_running(processes: set[tuple[int, str]]) -> list[int]:
    """The processes of ``processes`` that still exist (same PID and start time, not a zombie)."""
    left = []
    for pid, started in processes:
        fields = _stat_fields(pid)
        if fields is not None and fields[19] == started and fields[0] not in ("Z", "X"):
            left.append(pid)
    return left


@pytest.fixture(scope="session")
def localpods_manifests(tmp_path_factory: pytest.TempPathFactory) -> str:
    if os.environ.get("LOCALPODS_MANIFESTS"):
        return os.path.abspath(os.environ["LOCALPODS_MANIFESTS"])
    return render_manifests(str(tmp_path_factory.mktemp("localpods") / "manifests"), {"pg_cluster_postgresql_parameters": TUNED_PARAMETERS})


@pytest.fixture
def localpods_factory() -> Iterator[Callable[..., LocalPods]]:
    started: list[tuple[LocalPods, set]] = []

    def start(manifest_dir: str | None, replicas: int | None = None, wait: bool = True, options: list[str] | None = None) -> LocalPods:
        runtime = LocalPods.start(manifest_dir, replicas, wait=wait, options=options)
        started.append((runtime, set()))
        return runtime

    yield start
    _down_all(started)


def _down_all(started: list) -> None:
    """Brings every runtime down; fails if one did not stop or left any of its processes or cgroups
    behind."""
    left: list[int] = []
    left_cgroups: list[str] = []
    errors: list[str] = []
    for runtime, _manifests in started:
        if runtime.up:
            processes = runtime.processes()
            try:
                runtime.down()
            except (cli.LocalPodsError, OSError) as error:
                errors.append(f"{runtime}: {error}")
            left += still_running(processes)
            left_cgroups += runtime.cgroups()
    assert not left, f"processes left behind by the local pod runtime: {left}"
    assert not left_cgroups, f"cgroups left behind by the local pod runtime: {left_cgroups}"
    assert not errors, "local pod runtimes that did not come down cleanly: " + "; ".join(errors)


@pytest.fixture(scope="module")
def localpods_cluster(localpods_manifests: str) -> Iterator[LocalPods]:
    runtime = LocalPods.start(localpods_manifests)
    try:
        yield runtime
    finally:
        _down_all([(runtime, set())])


@pytest.fixture(scope="module")
def local_cluster(localpods_cluster: LocalPods) -> LocalPods:
    """The name the integration tests use: ``local_cluster.runtime_dir`` is the state directory."""
    return localpods_cluster
