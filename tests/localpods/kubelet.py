"""The kubelet of the local pod runtime: one ``Pod`` runs one pod object's spec with real processes.

A pod is a "pause" process in private mount and UTS namespaces (hostname, bind mounts, private
/etc/hosts); its containers are processes entered into them as the ``postgres`` OS user. Init
containers run one after the other to completion, then every container of the pod at once, each
supervised on its own: restarted after a back-off as the pod's ``restartPolicy`` says, probed by its
startup, liveness and readiness probes on their own periods, with its own log file and its own cgroup
below the pod's (tests/localpods/freezer.py), so that a crashed or killed container takes only its
own processes with it. The pod is ready when every container is.

A pod is owned by a controller (runtime.py: StatefulSets; deployments.py: ReplicaSets; jobs.py:
Jobs), which gives it its name, its template, the labels and owner reference of its Pod object and,
for a StatefulSet, its claims and governing Service; the kubelet needs nothing else of it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.localpods._api import LocalApiError, LocalApiStore
from tests.localpods.freezer import FreezerError, join_argv
from tests.localpods.images import ImageMapError, StandIn

if TYPE_CHECKING:
    from tests.localpods.runtime import Runtime

# Directories that a tmpfs must never hide inside a pod: mount points are made below them only.
PROTECTED = {"/", "/etc", "/var", "/var/lib", "/usr", "/run", "/var/run", "/home", "/opt", "/srv", "/tmp", "/root"}
# kubelet's sync period plus its ConfigMap cache: a change reaches a pod's volume within about this.
KUBELET_REFRESH_RANGE = (1.0, 90.0)
# A container that ran this long before it exited restarts after the shortest back-off again.
BACKOFF_RESET_AFTER = 10.0
POLL = 0.05


def kubelet_refresh_delay(seed: int, key: str, count: int) -> float:
    """The delay before refresh ``count`` of the ConfigMap and Secret volumes of the pod ``key``:
    drawn from KUBELET_REFRESH_RANGE, the same for the same seed."""
    draw = random.Random(f"{seed}/{key}/{count}")  # nosec B311 - timing, not secrets
    return draw.uniform(*KUBELET_REFRESH_RANGE)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def process_state(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, comm) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            data = handle.read()
    except OSError:
        return None
    comm = data[data.index("(") + 1 : data.rindex(")")]
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), comm


def pids_in_namespace(namespace: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and mount_namespace(int(entry)) == namespace:
            found.append(int(entry))
    return found


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (orphans adopted elsewhere are lost to this)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = process_state(int(entry))
            if state:
                children.setdefault(state[1], []).append(int(entry))
    found, pending = set(), [pid]
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(children.get(current, []))
    return found


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[0] not in ("Z", "X")


class PodLookupError(LookupError):
    """A pod or container that cannot serve a request. The message is the one the API server or the
    kubelet gives; ``status`` is the HTTP status it answers with (404, 400, or 500 for the kubelet's
    own errors, which clients print after "unable to upgrade connection: ")."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConfigSource:
    """Reads ConfigMaps and Secrets from the API store, as kubelet does from the API server."""

    def __init__(self, store: LocalApiStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    def data(self, kind: str, name: str) -> dict[str, bytes]:
        obj = self.store.get(kind, self.namespace, name)
        if obj is None:
            raise LookupError(f'{kind} "{name}" not found in namespace {self.namespace}')
        result: dict[str, bytes] = {}
        if kind == "Secret":
            for key, value in (obj.get("data") or {}).items():
                result[key] = base64.b64decode(value)
            for key, value in (obj.get("stringData") or {}).items():
                result[key] = str(value).encode()
        else:
            for key, value in (obj.get("data") or {}).items():
                result[key] = str(value).encode()
            for key, value in (obj.get("binaryData") or {}).items():
                result[key] = base64.b64decode(value)
        return result


def project(directory: str, files: dict[str, bytes], mode: int, gid: int) -> None:
    """Kubelet's atomic writer: files in a timestamped directory behind a ``..data`` symlink."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    current = os.path.join(directory, "..data")
    with contextlib.suppress(OSError):
        old = os.readlink(current)
        existing = {}
        for name in os.listdir(os.path.join(directory, old)):
            with open(os.path.join(directory, old, name), "rb") as handle:
                existing[name] = handle.read()
        if existing == files:
            return
    stamp = "..%s.%d" % (datetime.datetime.now().strftime("%Y_%m_%d_%H_%M_%S.%f"), os.getpid())
    target = os.path.join(directory, stamp)
    os.mkdir(target, 0o755)
    for name, content in files.items():
        path = os.path.join(target, name)
        with open(path, "wb") as handle:
            handle.write(content)
        os.chown(path, 0, gid)
        os.chmod(path, mode)
    link_tmp = os.path.join(directory, "..data_tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link_tmp)
    os.symlink(stamp, link_tmp)
    os.replace(link_tmp, current)
    for name in files:
        link = os.path.join(directory, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)
    for entry in os.listdir(directory):
        if entry.startswith("..") and entry not in ("..data", stamp):
            shutil.rmtree(os.path.join(directory, entry), ignore_errors=True)
        elif not entry.startswith("..") and entry not in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))


def find_container(spec: dict, pod: str, container: str) -> dict:
    """The container (or init container) named ``container`` of a pod spec, as the API server picks
    it for exec and logs: an empty name means the only container."""
    containers = list(spec.get("containers") or [])
    init_containers = list(spec.get("initContainers") or [])
    if not container:
        if len(containers) == 1:
            return containers[0]
        message = f"a container name must be specified for pod {pod}, choose one of: [{' '.join(c['name'] for c in containers)}]"
        if init_containers:
            message += f" or one of the init containers: [{' '.join(c['name'] for c in init_containers)}]"
        raise PodLookupError(400, message)
    for candidate in init_containers + containers:
        if candidate.get("name") == container:
            return candidate
    raise PodLookupError(400, f"container {container} is not valid for pod {pod}")


def default_container(spec: dict, annotations: dict) -> str:
    """The container kubectl execs into without ``-c``: the annotated default, else the first."""
    names = [c["name"] for c in spec.get("containers") or []]
    chosen = annotations.get("kubectl.kubernetes.io/default-container")
    return chosen if chosen in names else names[0]


@dataclass
class Options:
    """The kubelet's timing. ``probe_period`` None: each probe's own periodSeconds, as kubelet; a
    number replaces the period (and initial delay) of readiness probes, for tests that wait on
    readiness changes; startup and liveness probes always keep their own, which decide restarts.
    ``config_refresh`` None: each pod's ConfigMap and Secret volumes refresh after a delay drawn
    from KUBELET_REFRESH_RANGE with ``seed``; a number is a fixed period."""

    probe_period: float | None = None
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    config_refresh: float | None = None
    grace_max: float = 30.0
    seed: int = 0
    liveness: bool = True
    images: Any = None


@dataclass
class PodIdentity:
    """What the owning controller decides about a pod: everything of its Pod object that is not the
    template's, and the files it sees that depend on its owner."""

    namespace: str
    name: str
    owner_reference: dict
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    subdomain: str = ""
    # PersistentVolumeClaim templates of a StatefulSet: volume name -> (claim name, template).
    claim_templates: dict[str, tuple[str, dict]] = field(default_factory=dict)
    # Lines of the pod's hosts file beside its own (a StatefulSet's members).
    host_lines: Callable[[], list[str]] = list


class Probe:
    """One probe of one container, on its own thread as kubelet's prober workers: every period it
    asks, and after ``failureThreshold`` failures or ``successThreshold`` successes in a row it
    changes the container's state."""

    def __init__(self, container: Container, kind: str, spec: dict) -> None:
        options = container.pod.runtime.options
        self.container, self.kind, self.spec = container, kind, spec
        fast = options.probe_period is not None and kind == "readiness"
        self.period = options.probe_period if fast else float(spec.get("periodSeconds", 10))
        self.initial_delay = 0.0 if fast else float(spec.get("initialDelaySeconds", 0))
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.failure_threshold = int(spec.get("failureThreshold", 3))
        self.success_threshold = int(spec.get("successThreshold", 1))
        self.trigger = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"probe-{container.pod.name}-{container.name}-{kind}", daemon=True)

    def ask(self) -> bool:
        pod = self.container.pod
        handlers = [name for name in ("exec", "tcpSocket", "httpGet", "grpc") if name in self.spec]
        if "exec" in self.spec:
            return self.container.exec_probe(list(self.spec["exec"].get("command") or []), self.timeout) == 0
        if "tcpSocket" in self.spec:
            try:
                with socket.create_connection(
                    (self.spec["tcpSocket"].get("host") or pod.ip, self.container.port(self.spec["tcpSocket"]["port"])), self.timeout
                ):
                    return True
            except OSError:
                return False
        if "httpGet" in self.spec:
            get = self.spec["httpGet"]
            url = f"{(get.get('scheme') or 'HTTP').lower()}://{get.get('host') or pod.ip}:{self.container.port(get['port'])}{get.get('path') or '/'}"
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as response:  # nosec B310 - the pod's own address
                    return 200 <= response.status < 400
            except OSError:
                return False
        raise ValueError(f"container {self.container.name}: {self.kind} probe handler {handlers} is not supported here")

    def run(self) -> None:
        container, pod = self.container, self.container.pod
        successes = failures = 0
        run_seen = -1
        while not pod.terminating.is_set():
            self.trigger.wait(self.period)
            self.trigger.clear()
            if pod.terminating.is_set():
                return
            # The kubelet of a frozen node is frozen with it: no probe, and the pod keeps its status.
            if pod.frozen or not container.running:
                continue
            if run_seen != container.runs:
                # A restarted container starts with no probe results.
                run_seen, successes, failures = container.runs, 0, 0
            if time.monotonic() - container.started_at < self.initial_delay:
                continue
            if (self.kind == "startup") == container.started:
                # The startup probe runs until it first succeeds; the others only after that.
                continue
            try:
                ok = self.ask()
            except ValueError as error:
                pod.runtime.log(f"pod {pod.name}: {error}")
                return
            if run_seen != container.runs or not container.running:
                continue
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and successes >= self.success_threshold:
                container.probe_succeeded(self.kind)
            elif not ok and failures >= self.failure_threshold:
                container.probe_failed(self.kind, failures)


class Container:
    """One container of a pod (init or not): its process, state, restarts and probes."""

    def __init__(self, pod: Pod, spec: dict, init: bool) -> None:
        self.pod, self.spec, self.init = pod, spec, init
        self.name: str = spec["name"]
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.cgroup_procs: str | None = None
        self.state: dict = {"waiting": {"reason": "PodInitializing"}}
        self.last_state: dict = {}
        self.restart_count = 0
        # Bumped at every start: a probe's answer about an earlier run is dropped.
        self.runs = 0
        self.started_at = 0.0
        self.running = False
        self.ready = False
        # kubelet's "started": the startup probe passed (at once without one).
        self.started = False
        self.exit_code: int | None = None
        self.killed_by: str = ""
        self.probes: dict[str, Probe] = {}
        if not init:
            for kind, key in (("startup", "startupProbe"), ("liveness", "livenessProbe"), ("readiness", "readinessProbe")):
                if spec.get(key) and (kind == "readiness" or pod.runtime.options.liveness):
                    self.probes[kind] = Probe(self, kind, spec[key])

    # -- processes ----------------------------------------------------------------------------

    def port(self, port: Any) -> int:
        """A probe's port, a number or the name of one of the container's ports."""
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for candidate in self.spec.get("ports") or []:
            if candidate.get("name") == port:
                return int(candidate["containerPort"])
        raise ValueError(f"container {self.name} has no port named {port}")

    def _in_cgroup(self, argv: list[str]) -> list[str]:
        return join_argv(self.cgroup_procs, argv) if self.cgroup_procs else argv

    def enter_argv(self, argv: list[str]) -> list[str]:
        return self._in_cgroup(self.pod.runtime.enter_argv(self.pod.pause.pid, argv))

    def processes(self) -> set[int]:
        """The container's processes: its cgroup's, or without a freezer its process tree (and, in a
        pod of one container, everything in the pod but the pause process)."""
        pod = self.pod
        freezer = pod.runtime.freezer
        if freezer is not None and self.cgroup_procs is not None:
            return set(freezer.container_members(pod.cgroup_name, self.name))
        found = descendants(self.proc.pid) if self.proc is not None else set()
        if len(pod.spec["containers"]) == 1 and pod.namespace_id:
            found.update(pids_in_namespace(pod.namespace_id))
        found.discard(pod.pause.pid if pod.pause else -1)
        return found

    def kill_processes(self) -> None:
        for _attempt in range(100):
            victims = [pid for pid in self.processes() if alive(pid)]
            if not victims:
                return
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(POLL)

    def spawn(self, stand_in: StandIn) -> subprocess.Popen:
        pod = self.pod
        argv = list(self.spec.get("command") or stand_in.entrypoint) + list(self.spec.get("args") or [])
        if not argv:
            raise ValueError(f"container {self.name}: no command, and image {self.spec.get('image')} has no entrypoint in the image map")
        env = pod.env(self.spec, stand_in)
        if pod.runtime.freezer is not None and pod.cgroup_procs is not None:
            self.cgroup_procs = pod.runtime.freezer.make_container_cgroup(pod.cgroup_name, self.name)
        log = open(pod.log_file(self.name), "ab")  # pylint: disable=consider-using-with
        log.write(f"--- {now()} localpods: starting {self.name}\n".encode())
        log.flush()
        try:
            proc = pod.runtime.reaper.spawn(self.enter_argv(argv), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", start_new_session=True)
        finally:
            log.close()
        self.env = env
        return proc

    def exec_probe(self, argv: list[str], timeout: float) -> int:
        pod = self.pod
        with pod.lock:
            if pod.tearing_down or pod.pause is None or not self.running:
                return -1
            proc = pod.runtime.reaper.spawn(
                self.enter_argv(argv),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )
        rc = pod.wait(proc, timeout)
        if rc is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            pod.wait(proc)
            return -1
        return rc

    def stop(self, reason: str) -> None:
        """Kills the running container as kubelet does for a failed liveness or startup probe:
        SIGTERM, SIGKILL after the grace period; its supervisor then restarts it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self.killed_by = reason
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        grace = min(
            float(self.spec.get("terminationGracePeriodSeconds", self.pod.spec.get("terminationGracePeriodSeconds", 30))), self.pod.runtime.options.grace_max
        )
        if self.pod.wait(proc, timeout=grace) is None:
            self.kill_processes()

    # -- probe results ------------------------------------------------------------------------

    def probe_succeeded(self, kind: str) -> None:
        if kind == "startup" and not self.started:
            self.started = True
            self._after_start()
        elif kind == "readiness" and not self.ready:
            self.ready = True
            self.pod.publish()

    def probe_failed(self, kind: str, failures: int) -> None:
        pod = self.pod
        if kind == "readiness":
            if self.ready:
                self.ready = False
                pod.publish()
            return
        pod.runtime.log(f"pod {pod.name}: container {self.name} failed its {kind} probe {failures} times, restarting it")
        threading.Thread(target=self.stop, args=(f"{kind} probe failed",), daemon=True).start()

    def _after_start(self) -> None:
        """Started (no startup probe, or it passed): readiness is asked at once, as kubelet triggers
        its readiness worker when a container's status changes."""
        readiness = self.probes.get("readiness")
        if readiness is None:
            self.ready = True
        else:
            readiness.trigger.set()
        self.pod.publish()

    # -- supervision --------------------------------------------------------------------------

    def run_once(self) -> int | None:
        """Starts the container and waits for its end; None when the pod is torn down meanwhile or
        the image cannot be run."""
        pod = self.pod
        try:
            stand_in = pod.runtime.images.resolve(self.spec.get("image", ""))
        except ImageMapError as error:
            self.state = {"waiting": {"reason": "ErrImagePull", "message": str(error)}}
            pod.runtime.log(f"pod {pod.name}: container {self.name}: {error}")
            pod.publish()
            return None
        with pod.lock:
            if pod.terminating.is_set():
                return None
            self.proc = self.spawn(stand_in)
            self.runs += 1
            self.started_at = time.monotonic()
            self.running, self.ready, self.started, self.killed_by = True, False, "startup" not in self.probes, ""
            self.state = {"running": {"startedAt": now()}}
        pod.write_exec_info()
        if self.init:
            pod.publish()
        elif self.started:
            self._after_start()
        else:
            pod.publish()
        rc = pod.wait(self.proc)
        with pod.lock:
            self.running = self.ready = False
        pod.write_exec_info()
        # The container's leftovers (a killed postmaster's backends) go with it.
        self.kill_processes()
        return rc

    def supervise(self) -> None:
        """Runs the container until the pod is torn down, or until it is done by the restart policy."""
        pod = self.pod
        policy = pod.restart_policy
        attempts = 0
        for probe in self.probes.values():
            probe.thread.start()
        while not pod.terminating.is_set():
            started = time.monotonic()
            rc = self.run_once()
            if pod.terminating.is_set():
                return
            if rc is not None:
                self.exit_code = rc
                reason = "Completed" if rc == 0 else "Error"
                terminated = {"exitCode": rc, "reason": reason, "finishedAt": now()}
                if self.killed_by:
                    terminated["message"] = self.killed_by
                if policy == "Never" or (policy == "OnFailure" and rc == 0):
                    self.state = {"terminated": terminated}
                    pod.container_done(self)
                    return
                self.restart_count += 1
                self.last_state = {"terminated": terminated}
                self.state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting failed container {self.name}, exit code {rc}"}}
                pod.publish()
            attempts = 1 if time.monotonic() - started > BACKOFF_RESET_AFTER else attempts + 1
            if not pod.backoff(attempts):
                return

    def status(self) -> dict:
        state = self.state if (self.init or self.pod.initialized) else {"waiting": {"reason": "PodInitializing"}}
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.running and self.started,
            "state": state,
            "lastState": self.last_state,
        }


class Pod:
    """Kubelet for one pod: pause process, volumes, init containers, every container, readiness."""

    def __init__(self, runtime: Runtime, identity: PodIdentity, template: dict) -> None:
        self.runtime = runtime
        self.identity = identity
        self.namespace = identity.namespace
        self.name = identity.name
        self.ip = runtime.pod_ip(self.namespace, self.name)
        self.dir = runtime.pod_dir(self.namespace, self.name)
        self.cgroup_name = runtime.cgroup_name(self.namespace, self.name)
        self.configs = ConfigSource(runtime.store, self.namespace)
        # The template as it was when the pod was made: a pod never changes its spec.
        self.template = json.loads(json.dumps(template))
        self.spec = self.template["spec"]
        self.restart_policy: str = self.spec.get("restartPolicy") or "Always"
        self.init_containers = [Container(self, spec, True) for spec in self.spec.get("initContainers") or []]
        self.containers = [Container(self, spec, False) for spec in self.spec["containers"]]
        self.default_container = default_container(self.spec, (self.template.get("metadata") or {}).get("annotations") or {})
        # (namespace, claim) of every PersistentVolumeClaim the pod mounts: protected while it lives.
        self.claim_keys = {(self.namespace, claim) for claim in self.claims()}
        self.volumes: dict[str, dict] = {}
        self.pause: subprocess.Popen | None = None
        self.namespace_id: str | None = None
        # The cgroup.procs file of the pod's cgroup, once made (None: the machine has no freezer).
        self.cgroup_procs: str | None = None
        self.frozen = False
        # Set (under the lock) once the pod is being torn down: from then on it is never frozen again.
        self.tearing_down = False
        self.finished_at = 0.0
        self.terminating = threading.Event()
        self.finished = threading.Event()
        # Every container ended for good (restartPolicy Never or OnFailure): phase Succeeded or Failed.
        self.completed = threading.Event()
        # Its controller started deleting it (the deletion may not have begun yet).
        self.deletion_requested = False
        self.lock = threading.RLock()
        self.config_view_held = False
        self.refreshes = 0
        self.phase = "Pending"
        self.initialized = False
        self.started_at = ""
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.namespace}-{self.name}", daemon=True)

    @property
    def ready(self) -> bool:
        return self.initialized and self.phase == "Running" and all(container.ready for container in self.containers)

    @property
    def running(self) -> bool:
        return any(container.running for container in self.init_containers + self.containers)

    def container(self, name: str) -> Container:
        for container in self.init_containers + self.containers:
            if container.name == name:
                return container
        raise PodLookupError(400, f"container {name} is not valid for pod {self.name}")

    def claims(self) -> list[str]:
        claims = [claim for claim, _template in self.identity.claim_templates.values()]
        # A volume without a claim name fails in the pod's kubelet, which reports it, not here.
        claims += [
            (volume.get("persistentVolumeClaim") or {}).get("claimName") for volume in self.spec.get("volumes") or [] if "persistentVolumeClaim" in volume
        ]
        return [claim for claim in claims if claim]

    def log_file(self, container: str) -> str:
        return os.path.join(self.dir, "logs", container + ".log")

    # -- volumes and namespaces ------------------------------------------------------------

    def _volume_sources(self) -> dict[str, dict]:
        """Host directory, kind and projection of every volume of the pod spec."""
        runtime = self.runtime
        result: dict[str, dict] = {}
        for volume_name, (claim, template) in self.identity.claim_templates.items():
            result[volume_name] = {"path": runtime.claim_dir(self.namespace, claim), "kind": "pvc", "claim": claim, "template": template}
        for volume in self.spec.get("volumes") or []:
            name = volume["name"]
            if "emptyDir" in volume:
                result[name] = {"path": os.path.join(self.dir, "empty-dir", name), "kind": "emptyDir"}
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                result[name] = {"path": runtime.claim_dir(self.namespace, claim), "kind": "shared", "claim": claim}
            elif "configMap" in volume or "secret" in volume:
                kind = "ConfigMap" if "configMap" in volume else "Secret"
                source = volume.get("configMap") or volume.get("secret")
                ref = source.get("name") or source.get("secretName")
                default_mode = source.get("defaultMode", 0o644)
                result[name] = {"path": os.path.join(self.dir, "projected", name), "kind": kind, "ref": ref, "items": source.get("items"), "mode": default_mode}
            else:
                raise ValueError(f"volume {name}: unsupported volume type")
        return result

    def _project_configs(self) -> None:
        for volume in self.volumes.values():
            if volume["kind"] not in ("ConfigMap", "Secret"):
                continue
            data = self.configs.data(volume["kind"], volume["ref"])
            if volume["items"]:
                files = {item["path"]: data[item["key"]] for item in volume["items"]}
                project(volume["path"], files, volume["mode"], self.runtime.gid)
            else:
                project(volume["path"], data, volume["mode"], self.runtime.gid)

    def _prepare_volumes(self) -> None:
        runtime = self.runtime
        uid, gid = runtime.uid, runtime.gid
        self.volumes = self._volume_sources()
        if os.path.isdir(os.path.join(self.dir, "empty-dir")):
            shutil.rmtree(os.path.join(self.dir, "empty-dir"))
        # Under the volume lock: the reclaimer never removes a directory that a pod is taking.
        with runtime.volume_lock:
            for volume in self.volumes.values():
                if volume["kind"] not in ("pvc", "shared", "emptyDir"):
                    continue
                if volume["kind"] != "emptyDir":
                    # A claim deleted since its directory was made: its volume went with it.
                    runtime.reclaim(self.namespace, volume["claim"], other_than=self)
                fresh = not os.path.isdir(volume["path"])
                os.makedirs(volume["path"], exist_ok=True)
                if fresh:
                    # fsGroup: group-owned by the container's group, setgid, like kubelet does.
                    os.chown(volume["path"], uid, gid)
                    os.chmod(volume["path"], 0o2777 if volume["kind"] == "emptyDir" else 0o2770)
                if volume["kind"] == "pvc":
                    runtime.ensure_claim(self.namespace, volume["claim"], volume["template"])
                if volume["kind"] != "emptyDir":
                    runtime.track_claim(self.namespace, volume["claim"])
        self._project_configs()

    def next_refresh_delay(self) -> float:
        """Seconds until the next refresh of the pod's ConfigMap and Secret volumes."""
        options = self.runtime.options
        if options.config_refresh is not None:
            return options.config_refresh
        self.refreshes += 1
        return kubelet_refresh_delay(options.seed, f"{self.namespace}/{self.name}/{self.started_at}", self.refreshes)

    def _refresh_configs(self) -> None:
        """kubelet refreshes ConfigMap and Secret volumes on its own schedule, per pod, not when a
        container restarts: a restarted container may read files as old as the last refresh."""
        while not self.terminating.wait(self.next_refresh_delay()):
            if self.frozen or self.config_view_held:
                continue
            with contextlib.suppress(LookupError, OSError, LocalApiError):
                self._project_configs()

    def _mount_script(self) -> str:
        mounts: dict[str, tuple[str, bool]] = {}
        for container in (self.spec.get("initContainers") or []) + self.spec["containers"]:
            for mount in container.get("volumeMounts") or []:
                source = self.volumes[mount["name"]]["path"]
                if mount.get("subPath"):
                    source = os.path.join(source, mount["subPath"])
                mounts[os.path.normpath(mount["mountPath"])] = (source, bool(mount.get("readOnly")))
        mounts["/etc/hosts"] = (os.path.join(self.dir, "hosts"), True)
        mounts["/etc/resolv.conf"] = (os.path.join(self.dir, "resolv.conf"), True)
        tmpfs_roots: set[str] = set()
        for target in mounts:
            if os.path.lexists(target):
                continue
            ancestor = os.path.dirname(target)
            while not os.path.exists(ancestor):
                ancestor = os.path.dirname(ancestor)
            if ancestor in PROTECTED:
                raise ValueError(f"cannot make mount point {target}: its parent {ancestor} is a system directory")
            tmpfs_roots.add(ancestor)
        lines = ["set -eu"]
        for root in sorted(tmpfs_roots):
            lines.append(f"mount -t tmpfs -o mode=0755,size=1m localpods-{self.name} '{root}'")
        state = os.path.realpath(self.runtime.state_dir)
        # Mounting over an ancestor of the state directory would hide the remaining sources.
        ordered = sorted(mounts, key=lambda t: (state.startswith(t.rstrip("/") + "/"), t))
        for target in ordered:
            source, read_only = mounts[target]
            if any(target.startswith(root + "/") for root in tmpfs_roots):
                lines.append(f"mkdir -p '{target}'")
            lines.append(f"mount --bind '{source}' '{target}'")
            if read_only:
                lines.append(f"mount -o remount,bind,ro '{target}'")
        lines.append(f"hostname '{self.identity.hostname or self.name}'")
        lines.append("echo ready")
        lines.append("exec sleep infinity")
        return "\n".join(lines) + "\n"

    def _hosts_text(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        identity = self.identity
        owner_lines = identity.host_lines()
        if not any(line.split("\t", 1)[0] == self.ip for line in owner_lines):
            hostname = identity.hostname or self.name
            names = [f"{hostname}.{identity.subdomain}.{self.namespace}.svc.cluster.local", hostname] if identity.subdomain else [hostname]
            lines.append(self.ip + "\t" + " ".join(names))
        lines.extend(owner_lines)
        lines.extend(self.runtime.services.hosts_lines(self.namespace))
        return "\n".join(lines) + "\n"

    def refresh_hosts(self) -> None:
        """Rewrites the hosts file in place (the pod has it bind-mounted: a new file would not be seen)
        when the Services' names changed; reads in the moment of the write may see it short."""
        path = os.path.join(self.dir, "hosts")
        text = self._hosts_text()
        try:
            with open(path, "r+", encoding="utf-8") as handle:
                if handle.read() == text:
                    return
                handle.seek(0)
                handle.truncate()
                handle.write(text)
        except FileNotFoundError:
            return

    def _write_network_files(self) -> None:
        ns = self.namespace
        search = [f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        if self.identity.subdomain:
            search.insert(0, f"{self.identity.subdomain}.{ns}.svc.cluster.local")
        atomic_write(os.path.join(self.dir, "hosts"), self._hosts_text())
        # No DNS server outside loopback: names missing from hosts fail at once.
        atomic_write(os.path.join(self.dir, "resolv.conf"), f"search {' '.join(search)}\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def _start_pause(self) -> None:
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self._write_network_files()
        script = self._mount_script()
        argv = ["unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/bash", "-c", script]
        with open(os.path.join(self.dir, "logs", "pause.log"), "ab") as log:
            self.pause = self.runtime.reaper.spawn(
                join_argv(self.cgroup_procs, argv) if self.cgroup_procs else argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        line = self.pause.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"pod {self.name}: the pause process failed, see {self.dir}/logs/pause.log")
        self.namespace_id = mount_namespace(self.pause.pid)

    # -- containers ------------------------------------------------------------------------

    def env(self, container: dict, stand_in: StandIn) -> dict[str, str]:
        configs = self.configs
        # The image's own variables first; the container spec's replace them.
        env: dict[str, str] = {"PATH": stand_in.search_path(), **stand_in.env}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = configs.data("ConfigMap", source["configMapRef"]["name"])
            else:
                data = configs.data("Secret", source["secretRef"]["name"])
            env.update({prefix + key: value.decode() for key, value in data.items()})
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "status.podIP": self.ip,
            "spec.nodeName": self.runtime.node_of(self),
            "status.hostIP": "127.0.0.1",
        }
        for item in container.get("env") or []:
            if "value" in item:
                value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
            elif "fieldRef" in (item.get("valueFrom") or {}):
                value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
            elif "configMapKeyRef" in (item.get("valueFrom") or {}):
                ref = item["valueFrom"]["configMapKeyRef"]
                value = configs.data("ConfigMap", ref["name"])[ref["key"]].decode()
            elif "secretKeyRef" in (item.get("valueFrom") or {}):
                ref = item["valueFrom"]["secretKeyRef"]
                value = configs.data("Secret", ref["name"])[ref["key"]].decode()
            else:
                raise ValueError(f"env {item['name']}: unsupported source")
            env[item["name"]] = value
        env["HOSTNAME"] = self.identity.hostname or self.name
        # Every pod shares the host's network here: a member that would listen on every address
        # listens on its own pod address instead.
        if "PG_LISTEN_ADDRESSES" in env:
            env["PG_LISTEN_ADDRESSES"] = self.ip
        return env

    def wait(self, proc: subprocess.Popen, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = proc.poll()
            if rc is not None:
                self.runtime.reaper.forget(proc)
                return rc
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(POLL)

    def backoff(self, attempt: int) -> bool:
        """Sleeps the back-off; False when the pod is being terminated meanwhile."""
        delay = min(self.runtime.options.backoff_initial * (2 ** max(attempt - 1, 0)), self.runtime.options.backoff_max)
        return not self.terminating.wait(delay)

    # -- requests from an API server -------------------------------------------------------

    def exec_process(self, container: str, argv: list[str], stdin: bool) -> subprocess.Popen:
        """``argv`` started in the running container ``container``; see ``Runtime.exec_process``."""
        spec = find_container(self.spec, self.name, container)
        if not argv:
            raise ValueError("exec needs a command")
        target = self.container(spec["name"])
        with self.lock:
            proc, pause = target.proc, self.pause
            running = not self.tearing_down and target.running and proc is not None and proc.poll() is None and pause is not None and pause.poll() is None
            if not running:
                raise PodLookupError(500, f'container not found ("{spec["name"]}")')
            # Under the pod's lock: a teardown that starts now finds the command in the pod's cgroup.
            return self.runtime.reaper.spawn(
                target.enter_argv(list(argv)),
                env=dict(target.env),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd="/",
                start_new_session=True,
            )

    def log_path(self, container: str, previous: bool) -> str:
        """The log file of ``container``; see ``Runtime.container_log``."""
        spec = find_container(self.spec, self.name, container)
        target = self.container(spec["name"])
        started = target.runs > 0
        if previous and target.restart_count == 0:
            raise PodLookupError(400, f'previous terminated container "{target.name}" in pod "{self.name}" not found')
        if not started:
            raise PodLookupError(400, f'container "{target.name}" in pod "{self.name}" is waiting to start: PodInitializing')
        return self.log_file(target.name)

    # -- the pod's life --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._run_pod()
        except Exception as error:  # pylint: disable=broad-except
            self.runtime.log(f"pod {self.name}: {error!r}")
            self.phase = "Failed"
            self.publish()
        finally:
            self._kill_everything()
            self.finished_at = time.monotonic()
            self.finished.set()

    def _run_init_container(self, container: Container) -> bool:
        """Runs an init container to success; False when the pod ends first (torn down, or failed
        under restartPolicy Never)."""
        attempts = 0
        while not self.terminating.is_set():
            rc = container.run_once()
            if self.terminating.is_set():
                return False
            if rc == 0:
                container.state = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now()}}
                return True
            if rc is not None:
                if self.restart_policy == "Never":
                    container.state = {"terminated": {"exitCode": rc, "reason": "Error", "finishedAt": now()}}
                    self.phase = "Failed"
                    self.publish()
                    return False
                container.restart_count += 1
                container.state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"exit code {rc}"}}
                self.publish()
            attempts += 1
            if not self.backoff(attempts):
                return False
        return False

    def _run_pod(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        freezer = self.runtime.freezer
        if freezer is not None:
            # Before the first process of the pod: each one joins it as it starts.
            self.cgroup_procs = freezer.make_pod_cgroup(self.cgroup_name)
        self._prepare_volumes()
        self._start_pause()
        threading.Thread(target=self._refresh_configs, name=f"configs-{self.namespace}-{self.name}", daemon=True).start()
        self.phase = "Pending"
        self.publish()
        for container in self.init_containers:
            if not self._run_init_container(container):
                if self.phase == "Failed":
                    self.completed.set()
                    self._kill_everything()
                    self.terminating.wait()
                return
        self.initialized = True
        self.phase = "Running"
        threads = [threading.Thread(target=container.supervise, name=f"container-{self.name}-{container.name}", daemon=True) for container in self.containers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if not self.terminating.is_set():
            # Every container ended for good: the sandbox goes, the pod keeps its status until it is deleted.
            self._kill_everything()
        self.terminating.wait()

    def container_done(self, container: Container) -> None:
        """A container ended for good: once all have, the pod Succeeded (every one exited 0) or Failed."""
        with self.lock:
            if any(c.exit_code is None or c.running or "terminated" not in c.state for c in self.containers):
                self.publish()
                return
            self.phase = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        self.completed.set()
        self.publish()

    def write_exec_info(self) -> None:
        info = {
            "pod": self.name,
            "pause_pid": self.pause.pid if self.pause else None,
            "ip": self.ip,
            "default_container": self.default_container,
            "containers": {
                c.name: {
                    "running": c.running,
                    "env": c.env,
                    "cgroup_procs": c.cgroup_procs,
                    # What exec puts before its command to join the container's cgroup: it need not import freezer.py.
                    "cgroup_join_argv": join_argv(c.cgroup_procs, []) if c.cgroup_procs else None,
                }
                for c in self.init_containers + self.containers
                if c.runs
            },
        }
        with self.lock:
            if not self.tearing_down:
                atomic_write(os.path.join(self.dir, "exec.json"), json.dumps(info, indent=2), 0o600)

    # -- freezing ---------------------------------------------------------------------------

    def set_frozen(self, frozen: bool) -> list[int]:
        """Freezes or thaws every process of the pod (idempotent); the PIDs in its cgroup."""
        freezer = self.runtime.freezer
        with self.lock:
            if self.terminating.is_set() or self.tearing_down:
                # Its teardown thawed it already, for good.
                if frozen:
                    raise ValueError(f"pod {self.name} is being deleted")
                return freezer.members(self.cgroup_name) if freezer is not None else []
            if freezer is None or self.cgroup_procs is None:
                raise ValueError(f"pod {self.name} is starting and has no cgroup yet; try again")
            try:
                freezer.set_frozen(self.cgroup_name, frozen)
            except FreezerError as error:
                raise ValueError(str(error)) from None
            self.frozen = frozen
        return freezer.members(self.cgroup_name)

    def _thaw_for_teardown(self) -> None:
        """A frozen process takes no signal before it is thawed (cgroup v1 holds even SIGKILL), so
        every teardown thaws the pod first, as a frozen node that comes back then acts on a deletion."""
        self.tearing_down = True
        freezer = self.runtime.freezer
        if freezer is None or self.cgroup_procs is None:
            return
        try:
            freezer.set_frozen(self.cgroup_name, False)
        except FreezerError as error:
            self.runtime.log(f"pod {self.name}: {error}")
        self.frozen = False

    # -- termination -----------------------------------------------------------------------

    def _pod_pids(self) -> set[int]:
        """The processes of the pod: those in its mount namespace and those in its cgroups (a command
        exec'd into the pod is in a cgroup a moment before it enters the namespace)."""
        pids = set(pids_in_namespace(self.namespace_id)) if self.namespace_id else set()
        if self.runtime.freezer is not None and self.cgroup_procs is not None:
            pids.update(self.runtime.freezer.members(self.cgroup_name))
        return pids

    def _kill_everything(self) -> None:
        for container in self.init_containers + self.containers:
            container.running = container.ready = False
        with self.lock:
            self._thaw_for_teardown()
        if self.namespace_id or self.cgroup_procs is not None:
            for _attempt in range(100):
                victims = [pid for pid in self._pod_pids() if alive(pid) and (self.pause is None or pid != self.pause.pid)]
                if not victims:
                    break
                for pid in victims:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(POLL)
        if self.pause is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pause.pid, signal.SIGKILL)
            self.wait(self.pause)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, "exec.json"))
        if self.runtime.freezer is not None and self.cgroup_procs is not None:
            try:
                self.runtime.freezer.remove_pod_cgroup(self.cgroup_name)
            except FreezerError as error:
                self.runtime.log(f"pod {self.name}: {error}")

    def terminate(self) -> None:
        """Graceful deletion: SIGTERM to every running container at once, SIGKILL to the pod's
        processes after the grace period."""
        with self.lock:
            self.terminating.set()
            running = [c.proc for c in self.init_containers + self.containers if c.proc is not None and c.proc.poll() is None]
            self._thaw_for_teardown()
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        grace = min(float(self.spec.get("terminationGracePeriodSeconds", 30)), self.runtime.options.grace_max)
        deadline = time.monotonic() + grace
        for proc in running:
            if self.wait(proc, timeout=max(deadline - time.monotonic(), 0)) is None:
                break
        self.finished.wait()

    # -- status ----------------------------------------------------------------------------

    def pod_object(self) -> dict:
        identity = self.identity
        meta = self.template.get("metadata") or {}
        labels = {**(meta.get("labels") or {}), **identity.labels}
        spec = json.loads(json.dumps(self.spec))
        spec.update({"nodeName": self.runtime.node_of(self), "restartPolicy": self.restart_policy})
        if identity.hostname:
            spec["hostname"] = identity.hostname
        if identity.subdomain:
            spec["subdomain"] = identity.subdomain
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [identity.owner_reference],
            },
            "spec": spec,
            "status": {"phase": "Pending", "conditions": [], "qosClass": "Burstable"},
        }

    def publish(self) -> None:
        def cond(kind: str, value: bool) -> dict:
            return {"type": kind, "status": "True" if value else "False", "lastProbeTime": None, "lastTransitionTime": now()}

        ready = self.ready
        status = {
            "phase": self.phase,
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": "127.0.0.1",
            "startTime": self.started_at,
            "conditions": [cond("PodScheduled", True), cond("Initialized", self.initialized), cond("ContainersReady", ready), cond("Ready", ready)],
            "initContainerStatuses": [c.status() for c in self.init_containers],
            "containerStatuses": [c.status() for c in self.containers],
        }
        self.runtime.publish_pod(self, status)

    def start(self) -> None:
        self.started_at = now()
        self.runtime.create_pod_object(self)
        self.thread.start()
