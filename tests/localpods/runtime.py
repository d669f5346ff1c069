"""The daemon of the local pod runtime: a StatefulSet controller and a kubelet for its pods.

One process (started by ``cli.py up``) owns every process of every pod. It is a child subreaper, so
the orphans of a pod (PostgreSQL backends whose postmaster was killed) are reaped here at once
instead of by PID 1 seconds later. A pod is a "pause" process in private mount and UTS namespaces
(hostname, bind mounts, private /etc/hosts); containers are processes entered into them as the
``postgres`` OS user. Every process of a pod also belongs to the pod's cgroup (tests/localpods/freezer.py),
which ``freeze`` and ``thaw`` act on. Everything lives under one state directory.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any

import yaml

from tests.localpods._api import LocalApiError, LocalApiStore
from tests.localpods.freezer import Freezer, FreezerError, join_argv

PG_BIN = "/usr/lib/postgresql/15/bin"
OS_USER = "postgres"
MAX_ORDINALS = 20
MAX_SLOTS = 12
PR_SET_CHILD_SUBREAPER = 36
# Directories that a tmpfs must never hide inside a pod: mount points are made below them only.
PROTECTED = {"/", "/etc", "/var", "/var/lib", "/usr", "/run", "/var/run", "/home", "/opt", "/srv", "/tmp", "/root"}


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


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[0] not in ("Z", "X")


class Reaper:
    """Reaps orphans adopted as subreaper, never the children that Popen objects wait for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracked: set[int] = set()
        self.stopped = threading.Event()

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        with self.lock:
            proc = subprocess.Popen(argv, **kwargs)  # pylint: disable=consider-using-with
            self.tracked.add(proc.pid)
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.tracked.discard(proc.pid)

    def run(self) -> None:
        me = os.getpid()
        while not self.stopped.wait(0.1):
            with self.lock:
                for entry in os.listdir("/proc"):
                    if not entry.isdigit():
                        continue
                    pid = int(entry)
                    state = process_state(pid)
                    if state and state[1] == me and state[0] == "Z" and pid not in self.tracked:
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(pid, os.WNOHANG)


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
        existing = {name: open(os.path.join(directory, old, name), "rb").read() for name in os.listdir(os.path.join(directory, old))}
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


class Options:
    def __init__(self, probe_period: float, backoff_initial: float, backoff_max: float, config_refresh: float, grace_max: float) -> None:
        self.probe_period = probe_period
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.config_refresh = config_refresh
        self.grace_max = grace_max


class Pod:
    """Kubelet for one pod: pause process, volumes, init containers, main container, readiness."""

    def __init__(self, runtime: "Runtime", ordinal: int) -> None:
        self.runtime = runtime
        self.ordinal = ordinal
        self.name = f"{runtime.sts_name}-{ordinal}"
        self.ip = runtime.pod_ip(ordinal)
        self.dir = os.path.join(runtime.state_dir, "pods", self.name)
        self.spec = runtime.template["spec"]
        self.pause: subprocess.Popen | None = None
        self.namespace_id: str | None = None
        # The cgroup.procs file of the pod's cgroup, once made (None: the machine has no freezer).
        self.cgroup_procs: str | None = None
        self.frozen = False
        # Set (under the lock) once the pod is being torn down: from then on it is never frozen again.
        self.tearing_down = False
        self.main: subprocess.Popen | None = None
        # The container process running now (an init container or the main one).
        self.current: subprocess.Popen | None = None
        self.finished_at = 0.0
        self.ready = False
        self.running = False
        self.terminating = threading.Event()
        self.finished = threading.Event()
        self.lock = threading.Lock()
        self.restart_count = 0
        self.next_config_refresh = 0.0
        self.init_statuses: list[dict] = []
        self.main_state: dict = {"waiting": {"reason": "PodInitializing"}}
        self.last_state: dict = {}
        self.phase = "Pending"
        self.initialized = False
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # -- volumes and namespaces ------------------------------------------------------------

    def _volume_sources(self) -> dict[str, dict]:
        """Host directory, kind and projection of every volume of the pod spec."""
        runtime = self.runtime
        result: dict[str, dict] = {}
        for template in runtime.sts["spec"].get("volumeClaimTemplates") or []:
            claim = f"{template['metadata']['name']}-{self.name}"
            result[template["metadata"]["name"]] = {"path": runtime.claim_dir(claim), "kind": "pvc", "claim": claim, "template": template}
        for volume in self.spec.get("volumes") or []:
            name = volume["name"]
            if "emptyDir" in volume:
                result[name] = {"path": os.path.join(self.dir, "empty-dir", name), "kind": "emptyDir"}
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                result[name] = {"path": runtime.claim_dir(claim), "kind": "shared"}
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
            data = self.runtime.configs.data(volume["kind"], volume["ref"])
            if volume["items"]:
                files = {item["path"]: data[item["key"]] for item in volume["items"]}
                project(volume["path"], files, volume["mode"], self.runtime.gid)
            else:
                project(volume["path"], data, volume["mode"], self.runtime.gid)

    def _prepare_volumes(self) -> None:
        uid, gid = self.runtime.uid, self.runtime.gid
        self.volumes = self._volume_sources()
        if os.path.isdir(os.path.join(self.dir, "empty-dir")):
            shutil.rmtree(os.path.join(self.dir, "empty-dir"))
        for volume in self.volumes.values():
            if volume["kind"] in ("pvc", "shared", "emptyDir"):
                fresh = not os.path.isdir(volume["path"])
                os.makedirs(volume["path"], exist_ok=True)
                if fresh:
                    # fsGroup: group-owned by the container's group, setgid, like kubelet does.
                    os.chown(volume["path"], uid, gid)
                    os.chmod(volume["path"], 0o2777 if volume["kind"] == "emptyDir" else 0o2770)
                if volume["kind"] == "pvc":
                    self.runtime.ensure_claim(volume["claim"], volume["template"])
        self._project_configs()
        self.next_config_refresh = time.monotonic() + self.runtime.options.config_refresh

    def _refresh_configs_when_due(self) -> None:
        # kubelet refreshes ConfigMap and Secret volumes on its own period, not when a container
        # restarts: a restarted container may read files as old as one period.
        if time.monotonic() < self.next_config_refresh:
            return
        with contextlib.suppress(LookupError, OSError, LocalApiError):
            self._project_configs()
        self.next_config_refresh = time.monotonic() + self.runtime.options.config_refresh

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
        lines.append(f"hostname '{self.name}'")
        lines.append("echo ready")
        lines.append("exec sleep infinity")
        return "\n".join(lines) + "\n"

    def _write_network_files(self) -> None:
        runtime = self.runtime
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        svc, ns = runtime.service_name, runtime.namespace
        for ordinal in range(MAX_ORDINALS):
            pod = f"{runtime.sts_name}-{ordinal}"
            names = [f"{pod}.{svc}.{ns}.svc.cluster.local", f"{pod}.{svc}.{ns}.svc", f"{pod}.{svc}.{ns}", f"{pod}.{svc}"]
            if ordinal == self.ordinal:
                names.append(pod)
            lines.append(runtime.pod_ip(ordinal) + "\t" + " ".join(names))
        atomic_write(os.path.join(self.dir, "hosts"), "\n".join(lines) + "\n")
        # No DNS server outside loopback: names missing from hosts fail at once.
        atomic_write(
            os.path.join(self.dir, "resolv.conf"),
            f"search {svc}.{ns}.svc.cluster.local {ns}.svc.cluster.local svc.cluster.local\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )

    def _start_pause(self) -> None:
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self._write_network_files()
        script = self._mount_script()
        self.pause = self.runtime.reaper.spawn(
            self._in_cgroup(["unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/bash", "-c", script]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.dir, "logs", "pause.log"), "ab"),
            start_new_session=True,
        )
        line = self.pause.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"pod {self.name}: the pause process failed, see {self.dir}/logs/pause.log")
        self.namespace_id = mount_namespace(self.pause.pid)

    # -- containers ------------------------------------------------------------------------

    def env(self, container: dict) -> dict[str, str]:
        configs = self.runtime.configs
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = configs.data("ConfigMap", source["configMapRef"]["name"])
            else:
                data = configs.data("Secret", source["secretRef"]["name"])
            env.update({prefix + key: value.decode() for key, value in data.items()})
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.runtime.namespace,
            "status.podIP": self.ip,
            "spec.nodeName": "localpods",
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
        # The only mappings between the image and this machine.
        env["PATH"] = PG_BIN + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["HOME"] = "/var/lib/postgresql"
        env["HOSTNAME"] = self.name
        env["PG_LISTEN_ADDRESSES"] = self.ip
        env["POD_IP"] = self.ip
        return env

    def _in_cgroup(self, argv: list[str]) -> list[str]:
        return join_argv(self.cgroup_procs, argv) if self.cgroup_procs else argv

    def enter_argv(self, argv: list[str]) -> list[str]:
        return self._in_cgroup(self.runtime.enter_argv(self.pause.pid, argv))

    def _spawn(self, container: dict, log_name: str) -> subprocess.Popen:
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not argv:
            raise ValueError(f"container {container['name']}: no command (the image's entrypoint is not known here)")
        log = open(os.path.join(self.dir, "logs", log_name + ".log"), "ab")  # pylint: disable=consider-using-with
        log.write(f"--- {now()} localpods: starting {container['name']}\n".encode())
        log.flush()
        try:
            return self.runtime.reaper.spawn(
                self.enter_argv(argv), env=self.env(container), stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", start_new_session=True
            )
        finally:
            log.close()

    def _wait(self, proc: subprocess.Popen, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = proc.poll()
            if rc is not None:
                self.runtime.reaper.forget(proc)
                return rc
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def exec_in_pod(self, container: dict, argv: list[str], timeout: float) -> int:
        proc = self.runtime.reaper.spawn(
            self.enter_argv(argv),
            env=self.env(container),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
        rc = self._wait(proc, timeout)
        if rc is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._wait(proc)
            return -1
        return rc

    def _backoff(self, attempt: int) -> bool:
        """Sleeps the back-off; False when the pod is being terminated meanwhile."""
        delay = min(self.runtime.options.backoff_initial * (2 ** max(attempt - 1, 0)), self.runtime.options.backoff_max)
        return not self.terminating.wait(delay)

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

    def _run_pod(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        freezer = self.runtime.freezer
        if freezer is not None:
            # Before the first process of the pod: each one joins it as it starts.
            self.cgroup_procs = freezer.make_pod_cgroup(self.name)
        self._prepare_volumes()
        self._start_pause()
        self.phase = "Pending"
        self.publish()
        for index, container in enumerate(self.spec.get("initContainers") or []):
            attempts = 0
            self.init_statuses = self.init_statuses[:index] + [self._status(container, {"running": {"startedAt": now()}}, False, 0)]
            while True:
                self.publish()
                with self.lock:
                    if self.terminating.is_set():
                        return
                    proc = self.current = self._spawn(container, container["name"])
                self.init_statuses[index]["state"] = {"running": {"startedAt": now()}}
                rc = self._wait(proc)
                if self.terminating.is_set():
                    return
                if rc == 0:
                    self.init_statuses[index]["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now()}}
                    break
                attempts += 1
                self.init_statuses[index]["restartCount"] = attempts
                self.init_statuses[index]["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": f"exit code {rc}"}}
                self.publish()
                if not self._backoff(attempts):
                    return
        self.initialized = True
        container = self.spec["containers"][0]
        attempts = 0
        while not self.terminating.is_set():
            self._refresh_configs_when_due()
            started = time.monotonic()
            with self.lock:
                if self.terminating.is_set():
                    return
                self.main = self.current = self._spawn(container, container["name"])
            self.running = True
            self.phase = "Running"
            self.main_state = {"running": {"startedAt": now()}}
            self._write_exec_info(container)
            self.publish()
            rc = self._supervise(container)
            self.running = False
            self.ready = False
            self._write_exec_info(container)
            # The container's leftovers (a killed postmaster's backends) go with it.
            self._kill_pod_processes(keep_pause=True)
            if self.terminating.is_set():
                return
            self.restart_count += 1
            self.last_state = {"terminated": {"exitCode": rc, "reason": "Error" if rc else "Completed", "finishedAt": now()}}
            self.main_state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting failed container, exit code {rc}"}}
            self.publish()
            attempts = 1 if time.monotonic() - started > 10 else attempts + 1
            if not self._backoff(attempts):
                return

    def _supervise(self, container: dict) -> int:
        probe = container.get("readinessProbe") or {}
        command = (probe.get("exec") or {}).get("command")
        failure_threshold = int(probe.get("failureThreshold", 3))
        timeout = float(probe.get("timeoutSeconds", 1))
        period = self.runtime.options.probe_period
        failures = 0
        next_probe = time.monotonic()
        while True:
            rc = self._wait(self.main, timeout=0.05)
            if rc is not None:
                return rc
            if self.frozen:
                # The kubelet of a frozen node is frozen with it: no probe, no refreshed volume,
                # and the pod keeps the status it had.
                continue
            current = time.monotonic()
            self._refresh_configs_when_due()
            if current >= next_probe and not self.terminating.is_set():
                ok = True if not command else self.exec_in_pod(container, command, timeout) == 0
                if ok:
                    failures = 0
                    changed = not self.ready
                    self.ready = True
                else:
                    failures += 1
                    changed = self.ready and failures >= failure_threshold
                    if changed:
                        self.ready = False
                if changed:
                    self.publish()
                next_probe = time.monotonic() + period

    def _write_exec_info(self, container: dict) -> None:
        info = {
            "pod": self.name,
            "container": container["name"],
            "pause_pid": self.pause.pid if self.pause else None,
            "running": self.running,
            "env": self.env(container),
            "ip": self.ip,
            "cgroup_procs": self.cgroup_procs,
            # What exec puts before its command to join the pod's cgroup: it need not import freezer.py.
            "cgroup_join_argv": join_argv(self.cgroup_procs, []) if self.cgroup_procs else None,
        }
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
                return freezer.members(self.name) if freezer is not None else []
            if freezer is None or self.cgroup_procs is None:
                raise ValueError(f"pod {self.name} is starting and has no cgroup yet; try again")
            try:
                freezer.set_frozen(self.name, frozen)
            except FreezerError as error:
                raise ValueError(str(error)) from None
            self.frozen = frozen
        return freezer.members(self.name)

    def _thaw_for_teardown(self) -> None:
        """A frozen process takes no signal before it is thawed (cgroup v1 holds even SIGKILL), so
        every teardown thaws the pod first, as a frozen node that comes back then acts on a deletion."""
        self.tearing_down = True
        freezer = self.runtime.freezer
        if freezer is None or self.cgroup_procs is None:
            return
        try:
            freezer.set_frozen(self.name, False)
        except FreezerError as error:
            self.runtime.log(f"pod {self.name}: {error}")
        self.frozen = False

    # -- termination -----------------------------------------------------------------------

    def _pod_pids(self) -> set[int]:
        """The processes of the pod: those in its mount namespace and those in its cgroup (a command
        exec'd into the pod is in the cgroup a moment before it enters the namespace)."""
        pids = set(pids_in_namespace(self.namespace_id)) if self.namespace_id else set()
        if self.runtime.freezer is not None and self.cgroup_procs is not None:
            pids.update(self.runtime.freezer.members(self.name))
        return pids

    def _kill_pod_processes(self, keep_pause: bool) -> None:
        if not self.namespace_id and self.cgroup_procs is None:
            return
        pause_pid = self.pause.pid if self.pause else None
        for _attempt in range(100):
            victims = [pid for pid in self._pod_pids() if pid != pause_pid and alive(pid)]
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if not keep_pause and self.pause is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pause.pid, signal.SIGKILL)
            self._wait(self.pause)

    def _kill_everything(self) -> None:
        self.running = False
        self.ready = False
        with self.lock:
            self._thaw_for_teardown()
        self._kill_pod_processes(keep_pause=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, "exec.json"))
        if self.runtime.freezer is not None and self.cgroup_procs is not None:
            try:
                self.runtime.freezer.remove_pod_cgroup(self.name)
            except FreezerError as error:
                self.runtime.log(f"pod {self.name}: {error}")

    def terminate(self) -> None:
        """Graceful deletion: SIGTERM to the main container, SIGKILL after the grace period."""
        with self.lock:
            self.terminating.set()
            current = self.current
            self._thaw_for_teardown()
        if current is not None and current.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(current.pid, signal.SIGTERM)
            grace = min(float(self.spec.get("terminationGracePeriodSeconds", 30)), self.runtime.options.grace_max)
            if self._wait(current, timeout=grace) is None:
                self._kill_pod_processes(keep_pause=True)
        self.finished.wait()

    # -- status ----------------------------------------------------------------------------

    def _status(self, container: dict, state: dict, ready: bool, restarts: int) -> dict:
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": ready,
            "restartCount": restarts,
            "started": "running" in state,
            "state": state,
            "lastState": {},
        }

    def pod_object(self) -> dict:
        runtime = self.runtime
        meta = runtime.template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels.update(
            {
                "statefulset.kubernetes.io/pod-name": self.name,
                "apps.kubernetes.io/pod-index": str(self.ordinal),
                "controller-revision-hash": f"{runtime.sts_name}-localpods",
            }
        )
        spec = json.loads(json.dumps(self.spec))
        spec.update({"hostname": self.name, "subdomain": runtime.service_name, "nodeName": "localpods", "restartPolicy": "Always"})
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": runtime.namespace,
                "labels": labels,
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "name": runtime.sts_name,
                        "uid": runtime.sts.get("metadata", {}).get("uid", ""),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending", "conditions": [], "qosClass": "Burstable"},
        }

    def publish(self) -> None:
        container = self.spec["containers"][0]

        def cond(kind: str, value: bool) -> dict:
            return {"type": kind, "status": "True" if value else "False", "lastProbeTime": None, "lastTransitionTime": now()}

        main = self._status(container, self.main_state if self.initialized else {"waiting": {"reason": "PodInitializing"}}, self.ready, self.restart_count)
        main["lastState"] = self.last_state
        status = {
            "phase": self.phase,
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": "127.0.0.1",
            "startTime": self.started_at,
            "conditions": [cond("PodScheduled", True), cond("Initialized", self.initialized), cond("ContainersReady", self.ready), cond("Ready", self.ready)],
            "initContainerStatuses": self.init_statuses,
            "containerStatuses": [main],
        }
        self.runtime.publish_pod(self, status)

    def start(self) -> None:
        self.started_at = now()
        self.runtime.create_pod_object(self)
        self.thread.start()


class Runtime:
    """The StatefulSet controller, the store of objects, and the control socket."""

    def __init__(self, state_dir: str, manifest_dir: str | None, options: Options, replicas: int | None = None) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.options = options
        self.reaper = Reaper()
        self.store = LocalApiStore(os.path.join(self.state_dir, "api"))
        user = pwd.getpwnam(OS_USER)
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self.pods: dict[int, Pod] = {}
        self.stopped_ordinals: set[int] = set()
        self.paused_ordinals: set[int] = set()
        self.lock = threading.RLock()
        self.shutdown = threading.Event()
        self.slot, self.slot_socket = self._claim_slot()
        self.log_file = open(os.path.join(self.state_dir, "daemon.log"), "a", encoding="utf-8")  # pylint: disable=consider-using-with
        # This runtime's own cgroup, recorded in runtime.json so that `down` removes it even after
        # the daemon died; None (and why) when the machine offers no freezer: pods run, unfreezable.
        self.freezer, self.freezer_problem = Freezer.create()
        if self.freezer is None:
            self.log(f"no cgroup freezer, freeze is unavailable: {self.freezer_problem}")
        try:
            if manifest_dir:
                self._load(manifest_dir, replicas)
        except BaseException:
            if self.freezer is not None:
                with contextlib.suppress(FreezerError):
                    self.freezer.remove()
            raise
        info = json.load(open(os.path.join(self.state_dir, "runtime.json"), encoding="utf-8"))
        self.namespace, self.sts_name = info["namespace"], info["statefulset"]
        self.sts = self.store.get("StatefulSet", self.namespace, self.sts_name)
        self.template = self.sts["spec"]["template"]
        self.service_name = self.sts["spec"].get("serviceName") or self.sts_name
        self.configs = ConfigSource(self.store, self.namespace)

    def log(self, message: str) -> None:
        self.log_file.write(f"{now()} {message}\n")
        self.log_file.flush()

    # Two runtimes side by side get different loopback ranges: a slot is an abstract Unix socket
    # name, held while the daemon lives and released by the kernel when it dies.
    @staticmethod
    def _claim_slot() -> tuple[int, socket.socket]:
        for slot in range(MAX_SLOTS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(f"\0dbonk8s-localpods-slot-{slot}")
            except OSError:
                sock.close()
                continue
            return slot, sock
        raise RuntimeError(f"all {MAX_SLOTS} local pod runtime slots are in use")

    def pod_ip(self, ordinal: int) -> str:
        return f"127.0.0.{10 + MAX_ORDINALS * self.slot + ordinal}"

    def enter_argv(self, pause_pid: int, argv: list[str]) -> list[str]:
        return [
            "nsenter",
            "-t",
            str(pause_pid),
            "-m",
            "-u",
            "--",
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
            *argv,
        ]

    def claim_dir(self, claim: str) -> str:
        return os.path.join(self.state_dir, "volumes", claim)

    def _load(self, manifest_dir: str, replicas: int | None) -> None:
        sts = None
        for path in sorted(glob.glob(os.path.join(manifest_dir, "*.yaml")) + glob.glob(os.path.join(manifest_dir, "*.yml"))):
            with open(path, encoding="utf-8") as handle:
                for obj in yaml.safe_load_all(handle):
                    if not obj or "kind" not in obj:
                        continue
                    if obj["kind"] == "StatefulSet":
                        if replicas is not None:
                            obj["spec"]["replicas"] = replicas
                        sts = obj
                    namespace = (obj.get("metadata") or {}).get("namespace")
                    if obj["kind"] in ("Namespace", "PersistentVolume"):
                        namespace = "_cluster"
                    obj.setdefault("metadata", {})["namespace"] = namespace or "default"
                    try:
                        self.store.create(obj)
                    except LocalApiError as error:
                        if error.status != 409:
                            raise
        if sts is None:
            raise ValueError(f"no StatefulSet in {manifest_dir}")
        runtime_info = {
            # -S: exec needs only the standard library, and site-packages cost every call time.
            "exec_argv": [
                os.environ.get("LOCALPODS_PYTHON", sys.executable),
                "-S",
                os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli.py"),
                "--state-dir",
                self.state_dir,
                "exec",
            ],
            "namespace": sts["metadata"]["namespace"],
            "statefulset": sts["metadata"]["name"],
            "manifest_dir": os.path.abspath(manifest_dir),
            "slot": self.slot,
            "daemon_pid": os.getpid(),
            "freezer": self.freezer.describe() if self.freezer else None,
            "pod_ips": {f"{sts['metadata']['name']}-{i}": self.pod_ip(i) for i in range(MAX_ORDINALS)},
        }
        atomic_write(os.path.join(self.state_dir, "runtime.json"), json.dumps(runtime_info, indent=2) + "\n")

    def ensure_claim(self, claim: str, template: dict) -> None:
        obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": self.namespace, "labels": dict((template.get("metadata") or {}).get("labels") or {})},
            "spec": template.get("spec", {}),
            "status": {"phase": "Bound"},
        }
        with contextlib.suppress(LocalApiError):
            self.store.create(obj)

    def create_pod_object(self, pod: Pod) -> None:
        obj = pod.pod_object()
        try:
            self.store.create(obj)
        except LocalApiError as error:
            if error.status != 409:
                raise
            self.store.delete("Pod", self.namespace, pod.name)
            self.store.create(obj)

    def publish_pod(self, pod: Pod, status: dict) -> None:
        if pod.terminating.is_set() and not pod.running:
            return
        with contextlib.suppress(LocalApiError):
            self.store.patch_merge("Pod", self.namespace, pod.name, {"status": status})

    # -- the controller ----------------------------------------------------------------------

    def replicas(self) -> int:
        sts = self.store.get("StatefulSet", self.namespace, self.sts_name) or self.sts
        return int(sts["spec"].get("replicas", 1))

    def _delete_pod(self, ordinal: int) -> None:
        pod = self.pods.get(ordinal)
        if pod is None:
            return
        pod.terminate()
        with contextlib.suppress(LocalApiError):
            self.store.delete("Pod", self.namespace, pod.name)
        with self.lock:
            if self.pods.get(ordinal) is pod:
                del self.pods[ordinal]

    def controller(self) -> None:
        ordered = (self.sts["spec"].get("podManagementPolicy") or "OrderedReady") == "OrderedReady"
        while not self.shutdown.wait(0.05):
            try:
                self._reconcile(ordered)
            except Exception as error:  # pylint: disable=broad-except
                self.log(f"controller: {error!r}")

    def _reconcile(self, ordered: bool) -> None:
        replicas = self.replicas()
        # Scale down: the highest ordinal first, one at a time.
        extra = sorted((o for o in self.pods if o >= replicas), reverse=True)
        if extra:
            self._delete_pod(extra[0])
            return
        for ordinal, pod in list(self.pods.items()):
            # A Pod deleted through the API: kubelet stops it, the controller makes a new one.
            if (
                not pod.terminating.is_set()
                and pod.finished.is_set() is False
                and self.store.get("Pod", self.namespace, pod.name) is None
                and pod.thread.is_alive()
            ):
                threading.Thread(target=self._delete_pod, args=(ordinal,), daemon=True).start()
        # A pod whose kubelet failed (its setup raised) is made again after a back-off.
        for ordinal, pod in list(self.pods.items()):
            if pod.finished.is_set() and not pod.terminating.is_set() and time.monotonic() - pod.finished_at > self.options.backoff_max:
                with self.lock:
                    if self.pods.get(ordinal) is pod:
                        del self.pods[ordinal]
        ready_count = 0
        for ordinal in range(replicas):
            with self.lock:
                if ordinal in self.stopped_ordinals or ordinal in self.paused_ordinals:
                    if ordered:
                        break
                    continue
                pod = self.pods.get(ordinal)
                if pod is None:
                    pod = Pod(self, ordinal)
                    self.pods[ordinal] = pod
                    pod.start()
                    if ordered:
                        break
                    continue
            if pod.ready:
                ready_count += 1
            elif ordered:
                break
        status = {
            "replicas": len(self.pods),
            "readyReplicas": ready_count,
            "availableReplicas": ready_count,
            "currentReplicas": len(self.pods),
            "updatedReplicas": len(self.pods),
            "observedGeneration": 1,
        }
        sts = self.store.get("StatefulSet", self.namespace, self.sts_name)
        if sts is not None and sts.get("status") != {**(sts.get("status") or {}), **status}:
            self.store.patch_merge("StatefulSet", self.namespace, self.sts_name, {"status": status})

    # -- requests from the CLI ---------------------------------------------------------------

    def ordinal_of(self, pod_name: str) -> int:
        prefix = self.sts_name + "-"
        if not pod_name.startswith(prefix) or not pod_name[len(prefix) :].isdigit():
            raise ValueError(f"{pod_name} is not a pod of StatefulSet {self.sts_name}")
        return int(pod_name[len(prefix) :])

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "ping":
            return {}
        if op == "down":
            threading.Thread(target=self.stop_all, daemon=True).start()
            return {}
        ordinal = self.ordinal_of(request["pod"]) if "pod" in request else None
        if op == "delete-pod":
            self._delete_pod(ordinal)
            return {}
        if op == "stop":
            with self.lock:
                self.stopped_ordinals.add(ordinal)
            self._delete_pod(ordinal)
            return {}
        if op == "start":
            with self.lock:
                self.stopped_ordinals.discard(ordinal)
            return {}
        if op == "delete-volume":
            with self.lock:
                self.paused_ordinals.add(ordinal)
            try:
                self._delete_pod(ordinal)
                claim = f"{request.get('volume') or 'pgdata'}-{request['pod']}"
                shutil.rmtree(self.claim_dir(claim), ignore_errors=True)
                with contextlib.suppress(LocalApiError):
                    self.store.delete("PersistentVolumeClaim", self.namespace, claim)
            finally:
                with self.lock:
                    self.paused_ordinals.discard(ordinal)
            return {}
        if op in ("freeze", "thaw"):
            return {"pids": self._set_frozen(request["pod"], ordinal, op == "freeze")}
        if op == "kill":
            pod = self.pods.get(ordinal)
            if pod is None or not pod.running or pod.main is None:
                raise ValueError(f"pod {request['pod']} has no running container")
            signum = getattr(signal, "SIG" + request.get("signal", "KILL").upper().removeprefix("SIG"))
            if request.get("target", "postgres") == "container":
                targets = [pod.main.pid]
            else:
                targets = []
                for pid in pids_in_namespace(pod.namespace_id):
                    state = process_state(pid)
                    parent = process_state(state[1]) if state else None
                    if state and state[2] == "postgres" and parent and parent[2] != "postgres":
                        targets.append(pid)
                if not targets:
                    raise ValueError(f"pod {request['pod']}: postgres is not running")
            for pid in targets:
                os.kill(pid, signum)
            return {"pids": targets}
        raise ValueError(f"unknown request {op!r}")

    def _set_frozen(self, pod_name: str, ordinal: int, frozen: bool) -> list[int]:
        pod = self.pods.get(ordinal)
        if pod is None:
            raise ValueError(f"pod {pod_name} does not exist")
        if self.freezer is None:
            if not frozen:
                return []  # nothing can be frozen here, so every pod is thawed already
            raise ValueError(f"cannot freeze pod {pod_name}: this machine offers no usable cgroup freezer ({self.freezer_problem})")
        pids = pod.set_frozen(frozen)
        self.log(f"pod {pod_name}: {'frozen' if frozen else 'thawed'}, processes {pids}")
        return pids

    def stop_all(self) -> None:
        self.shutdown.set()
        pods = list(self.pods.values())
        threads = [threading.Thread(target=pod.terminate, daemon=True) for pod in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.freezer is not None:
            try:
                self.freezer.remove()
            except FreezerError as error:
                self.log(f"stop: {error}")
        self.reaper.stopped.set()
        self.done.set()

    def serve(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=self.stop_all, daemon=True).start())
        runtime = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    request = json.loads(self.rfile.readline())
                    response = {"ok": True, **runtime.handle(request)}
                except Exception as error:  # pylint: disable=broad-except
                    response = {"ok": False, "error": str(error)}
                self.wfile.write((json.dumps(response) + "\n").encode())

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        sock_path = os.path.join(self.state_dir, "control.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock_path)
        server = Server(sock_path, Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        reaper = threading.Thread(target=self.reaper.run, daemon=True)
        reaper.start()
        threading.Thread(target=self.controller, daemon=True).start()
        try:
            self.done.wait()
        finally:
            if not self.done.is_set():
                self.stop_all()
            server.shutdown()
            server.server_close()
            # Whatever was adopted as subreaper and is still exiting.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    pid, _status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    time.sleep(0.02)
            self.log("daemon stopped")
