"""The daemon of the local pod runtime: StatefulSet controllers and a kubelet for their pods.

One process (started by ``cli.py up``) owns every process of every pod. It is a child subreaper, so
the orphans of a pod (PostgreSQL backends whose postmaster was killed) are reaped here at once
instead of by PID 1 seconds later. A pod is a "pause" process in private mount and UTS namespaces
(hostname, bind mounts, private /etc/hosts); containers are processes entered into them as the
``postgres`` OS user. Every process of a pod also belongs to the pod's cgroup (tests/localpods/freezer.py),
which ``freeze`` and ``thaw`` act on. Everything lives under one state directory.

The controllers react to the object store only (``LocalApiStore`` under ``api/``), whoever writes it:
the importer of a render directory (``import_manifests``, run once before the controllers start),
the CLI, the modules, or an API server in this process. One ``StatefulSetController`` runs per
StatefulSet object of any namespace, from its creation to its deletion; the claims it provisions
are removed when their PersistentVolumeClaim object is, once no pod uses them.

Paths: the pods and volumes of the runtime's own namespace (``runtime.json``'s ``namespace``) are
``pods/<pod>`` and ``volumes/<claim>``; those of any other namespace are below
``namespaces/<namespace>/``. Pod addresses come from the runtime's loopback range, one per pod name
for as long as the daemon runs.

``Runtime.exec_process``, ``Runtime.container_log`` and ``Runtime.pods_of`` are what an API server
calls to serve exec and logs; they raise ``PodLookupError`` with the API server's or kubelet's words.
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
from collections.abc import Iterator
from typing import Any

import yaml

from tests.localpods._api import LocalApiError, LocalApiStore
from tests.localpods.api.server import ApiServer
from tests.localpods.freezer import Freezer, FreezerError, join_argv
from tests.localpods.services import ServiceProxies

PG_BIN = "/usr/lib/postgresql/15/bin"
OS_USER = "postgres"
MAX_ORDINALS = 20
MAX_SLOTS = 12
# The second octet of a slot's addresses beyond its first MAX_ORDINALS (127.0.0.x, the ones
# runtime.json lists): every StatefulSet after the first takes its addresses there.
EXTRA_ADDRESS_OCTET = 100
CONTROLLER_PERIOD = 0.05
DISCOVERY_PERIOD = 0.1
# Where the store keeps objects without a namespace (Namespace, PersistentVolume).
CLUSTER_SCOPE = "_cluster"
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


class PodLookupError(LookupError):
    """A pod or container that cannot serve a request. The message is the one the API server or the
    kubelet gives; ``status`` is the HTTP status it answers with (404, 400, or 500 for the kubelet's
    own errors, which clients print after "unable to upgrade connection: ")."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Reaper:
    """Reaps orphans adopted as subreaper, never the children that Popen objects wait for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracked: dict[int, subprocess.Popen] = {}
        self.stopped = threading.Event()

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        with self.lock:
            proc = subprocess.Popen(argv, **kwargs)  # pylint: disable=consider-using-with
            self.tracked[proc.pid] = proc
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        with self.lock:
            if self.tracked.get(proc.pid) is proc:
                del self.tracked[proc.pid]

    def run(self) -> None:
        me = os.getpid()
        while not self.stopped.wait(0.1):
            with self.lock:
                # A process that its owner waited for (an exec whose caller holds the Popen) is gone:
                # its PID may come back as an orphan's.
                for pid, proc in list(self.tracked.items()):
                    if proc.returncode is not None:
                        del self.tracked[pid]
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


class Options:
    def __init__(self, probe_period: float, backoff_initial: float, backoff_max: float, config_refresh: float, grace_max: float) -> None:
        self.probe_period = probe_period
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.config_refresh = config_refresh
        self.grace_max = grace_max


class Pod:
    """Kubelet for one pod: pause process, volumes, init containers, main container, readiness."""

    def __init__(self, controller: StatefulSetController, ordinal: int, template: dict) -> None:
        runtime = controller.runtime
        self.controller = controller
        self.runtime = runtime
        self.namespace = controller.namespace
        self.ordinal = ordinal
        self.name = f"{controller.name}-{ordinal}"
        self.ip = runtime.pod_ip(self.namespace, self.name)
        self.dir = runtime.pod_dir(self.namespace, self.name)
        self.cgroup_name = runtime.cgroup_name(self.namespace, self.name)
        # The template as it was when the pod was made: a later change of the StatefulSet reaches
        # the pods made after it, as the OnDelete update strategy does.
        self.template = json.loads(json.dumps(template))
        self.spec = self.template["spec"]
        # (namespace, claim) of every PersistentVolumeClaim the pod mounts: protected while it lives.
        self.claim_keys = {(self.namespace, claim) for claim in controller.claims_of(self.name, self.spec)}
        self.pause: subprocess.Popen | None = None
        self.namespace_id: str | None = None
        # The cgroup.procs file of the pod's cgroup, once made (None: the machine has no freezer).
        self.cgroup_procs: str | None = None
        self.frozen = False
        # Set (under the lock) once the pod is being torn down: from then on it is never frozen again.
        self.tearing_down = False
        self.main: subprocess.Popen | None = None
        # The container process running now (an init container or the main one), its spec and the
        # environment it started with, which commands exec'd into it get too.
        self.current: subprocess.Popen | None = None
        self.current_container: dict | None = None
        self.current_env: dict[str, str] = {}
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
        for template in self.controller.claim_templates:
            claim = f"{template['metadata']['name']}-{self.name}"
            path = runtime.claim_dir(self.namespace, claim)
            result[template["metadata"]["name"]] = {"path": path, "kind": "pvc", "claim": claim, "template": template}
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
            data = self.controller.configs.data(volume["kind"], volume["ref"])
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

    def _hosts_text(self) -> str:
        runtime = self.runtime
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        svc, ns = self.controller.service_name, self.namespace
        # The members of the pod's own governing Service, those that do not exist yet included: the
        # file is bind-mounted once, and a member's address never changes while the daemon runs.
        for ordinal in sorted(set(range(MAX_ORDINALS)) | {self.ordinal}):
            pod = f"{self.controller.name}-{ordinal}"
            names = [f"{pod}.{svc}.{ns}.svc.cluster.local", f"{pod}.{svc}.{ns}.svc", f"{pod}.{svc}.{ns}", f"{pod}.{svc}"]
            if ordinal == self.ordinal:
                names.append(pod)
            lines.append(runtime.pod_ip(ns, pod) + "\t" + " ".join(names))
        lines.extend(runtime.services.hosts_lines(ns))
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
        svc, ns = self.controller.service_name, self.namespace
        atomic_write(os.path.join(self.dir, "hosts"), self._hosts_text())
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
        configs = self.controller.configs
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
            "metadata.namespace": self.namespace,
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
        env = self.env(container)
        log = open(os.path.join(self.dir, "logs", log_name + ".log"), "ab")  # pylint: disable=consider-using-with
        log.write(f"--- {now()} localpods: starting {container['name']}\n".encode())
        log.flush()
        try:
            proc = self.runtime.reaper.spawn(self.enter_argv(argv), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", start_new_session=True)
        finally:
            log.close()
        self.current_container, self.current_env = container, env
        return proc

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

    def exec_in_pod(self, argv: list[str], timeout: float) -> int:
        proc = self.runtime.reaper.spawn(
            self.enter_argv(argv),
            env=self.current_env,
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

    # -- requests from an API server -------------------------------------------------------

    def exec_process(self, container: str, argv: list[str], stdin: bool) -> subprocess.Popen:
        """``argv`` started in the running container ``container``; see ``Runtime.exec_process``."""
        spec = find_container(self.spec, self.name, container)
        if not argv:
            raise ValueError("exec needs a command")
        with self.lock:
            current, pause = self.current, self.pause
            running = (
                not self.tearing_down
                and self.current_container is not None
                and self.current_container["name"] == spec["name"]
                and current is not None
                and current.poll() is None
                and pause is not None
                and pause.poll() is None
            )
            if not running:
                raise PodLookupError(500, f'container not found ("{spec["name"]}")')
            # Under the pod's lock: a teardown that starts now finds the command in the pod's cgroup.
            return self.runtime.reaper.spawn(
                self.enter_argv(list(argv)),
                env=dict(self.current_env),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd="/",
                start_new_session=True,
            )

    def log_path(self, container: str, previous: bool) -> str:
        """The log file of ``container``; see ``Runtime.container_log``."""
        spec = find_container(self.spec, self.name, container)
        name = spec["name"]
        init_names = [c["name"] for c in self.spec.get("initContainers") or []]
        if name in init_names:
            index = init_names.index(name)
            status = self.init_statuses[index] if index < len(self.init_statuses) else None
            started, restarts = status is not None, int(status["restartCount"]) if status else 0
        else:
            # Only the first container runs here; any other one never starts.
            started = name == self.spec["containers"][0]["name"] and self.main is not None
            restarts = self.restart_count if started else 0
        if previous and restarts == 0:
            raise PodLookupError(400, f'previous terminated container "{name}" in pod "{self.name}" not found')
        if not started:
            raise PodLookupError(400, f'container "{name}" in pod "{self.name}" is waiting to start: PodInitializing')
        return os.path.join(self.dir, "logs", name + ".log")

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
            self.cgroup_procs = freezer.make_pod_cgroup(self.cgroup_name)
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
                ok = True if not command else self.exec_in_pod(command, timeout) == 0
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
            "env": self.current_env,
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
        """The processes of the pod: those in its mount namespace and those in its cgroup (a command
        exec'd into the pod is in the cgroup a moment before it enters the namespace)."""
        pids = set(pids_in_namespace(self.namespace_id)) if self.namespace_id else set()
        if self.runtime.freezer is not None and self.cgroup_procs is not None:
            pids.update(self.runtime.freezer.members(self.cgroup_name))
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
                self.runtime.freezer.remove_pod_cgroup(self.cgroup_name)
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
        controller = self.controller
        meta = self.template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels.update(
            {
                "statefulset.kubernetes.io/pod-name": self.name,
                "apps.kubernetes.io/pod-index": str(self.ordinal),
                "controller-revision-hash": f"{controller.name}-localpods",
            }
        )
        spec = json.loads(json.dumps(self.spec))
        spec.update({"hostname": self.name, "subdomain": controller.service_name, "nodeName": "localpods", "restartPolicy": "Always"})
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "name": controller.name,
                        "uid": controller.uid,
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


def import_manifests(store: LocalApiStore, manifest_dir: str, replicas: int | None) -> dict | None:
    """Creates the objects of a render directory in the store and returns its first StatefulSet (None
    without one). An object that exists already stays as it is; ``replicas`` replaces the replica count
    of every StatefulSet imported."""
    first: dict | None = None
    found = 0
    for path in sorted(glob.glob(os.path.join(manifest_dir, "*.yaml")) + glob.glob(os.path.join(manifest_dir, "*.yml"))):
        with open(path, encoding="utf-8") as handle:
            for obj in yaml.safe_load_all(handle):
                if not obj or "kind" not in obj:
                    continue
                found += 1
                if obj["kind"] == "StatefulSet":
                    if replicas is not None:
                        obj["spec"]["replicas"] = replicas
                    first = first or obj
                namespace = (obj.get("metadata") or {}).get("namespace")
                if obj["kind"] in ("Namespace", "PersistentVolume"):
                    namespace = CLUSTER_SCOPE
                obj.setdefault("metadata", {})["namespace"] = namespace or "default"
                try:
                    store.create(obj)
                except LocalApiError as error:
                    if error.status != 409:
                        raise
    if not found:
        raise ValueError(f"no manifests in {manifest_dir}")
    return first


class StatefulSetController:
    """The controller of one StatefulSet object, from its creation in the store to its deletion: pods
    ``<name>-<ordinal>`` up to ``spec.replicas`` (podManagementPolicy OrderedReady or Parallel), their
    claims from ``volumeClaimTemplates``, and the StatefulSet's status."""

    def __init__(self, runtime: Runtime, sts: dict) -> None:
        metadata, spec = sts["metadata"], sts["spec"]
        if not spec["template"]["spec"].get("containers"):
            raise ValueError("the pod template has no containers")
        if not all((template.get("metadata") or {}).get("name") for template in spec.get("volumeClaimTemplates") or []):
            raise ValueError("a volumeClaimTemplate has no name")
        self.runtime = runtime
        self.namespace: str = metadata["namespace"]
        self.name: str = metadata["name"]
        self.uid: str = metadata.get("uid", "")
        self.sts = sts
        # Immutable in a real cluster, hence read once.
        self.ordered = (spec.get("podManagementPolicy") or "OrderedReady") == "OrderedReady"
        self.service_name: str = spec.get("serviceName") or self.name
        self.claim_templates: list[dict] = list(spec.get("volumeClaimTemplates") or [])
        self.configs = ConfigSource(runtime.store, self.namespace)
        self.pods: dict[int, Pod] = {}
        self.stopped_ordinals: set[int] = set()
        self.paused_ordinals: set[int] = set()
        self.lock = threading.RLock()
        self.thread = threading.Thread(target=self.run, name=f"statefulset-{self.namespace}-{self.name}", daemon=True)
        # Addresses in ordinal order: the first StatefulSet of an empty runtime gets those an imported one would.
        for ordinal in range(MAX_ORDINALS):
            runtime.pod_ip(self.namespace, f"{self.name}-{ordinal}")

    def claims_of(self, pod_name: str, spec: dict) -> list[str]:
        """The claims that pod ``pod_name`` with pod spec ``spec`` mounts."""
        claims = [f"{template['metadata']['name']}-{pod_name}" for template in self.claim_templates]
        # A volume without a claim name fails in the pod's kubelet, which reports it, not here.
        claims += [(volume.get("persistentVolumeClaim") or {}).get("claimName") for volume in spec.get("volumes") or [] if "persistentVolumeClaim" in volume]
        return [claim for claim in claims if claim]

    def ordinal_of(self, pod_name: str) -> int | None:
        prefix = self.name + "-"
        suffix = pod_name[len(prefix) :]
        if pod_name.startswith(prefix) and suffix.isdigit() and str(int(suffix)) == suffix:
            return int(suffix)
        return None

    def pod(self, ordinal: int) -> Pod | None:
        with self.lock:
            return self.pods.get(ordinal)

    def live_pods(self) -> list[Pod]:
        with self.lock:
            return [pod for pod in self.pods.values() if not pod.finished.is_set()]

    def run(self) -> None:
        runtime = self.runtime
        while not runtime.shutdown.wait(CONTROLLER_PERIOD):
            try:
                sts = runtime.store.get("StatefulSet", self.namespace, self.name)
                if sts is None or sts["metadata"].get("uid", "") != self.uid:
                    runtime.log(f"statefulset {self.namespace}/{self.name}: deleted, deleting its pods")
                    self._delete_pods()
                    runtime.forget_controller(self)
                    return
                self.sts = sts
                self._reconcile(sts)
            except Exception as error:  # pylint: disable=broad-except
                runtime.log(f"controller {self.namespace}/{self.name}: {error!r}")

    def delete_pod(self, ordinal: int) -> None:
        """Graceful deletion of the pod, then of its Pod object; returns once both are gone."""
        pod = self.pod(ordinal)
        if pod is None:
            return
        pod.terminate()
        with contextlib.suppress(LocalApiError):
            self.runtime.store.delete("Pod", self.namespace, pod.name)
        with self.lock:
            if self.pods.get(ordinal) is pod:
                del self.pods[ordinal]

    def _delete_pods(self) -> None:
        """What the garbage collector's background cascading deletion does to the pods of a deleted
        StatefulSet, all at once; its claims stay (persistentVolumeClaimRetentionPolicy Retain)."""
        with self.lock:
            ordinals = list(self.pods)
        threads = [threading.Thread(target=self.delete_pod, args=(ordinal,), daemon=True) for ordinal in ordinals]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Pod objects of this StatefulSet that no kubelet here runs go too.
        for obj in self.runtime.store.list("Pod", self.namespace):
            owners = (obj.get("metadata") or {}).get("ownerReferences") or []
            if any(owner.get("kind") == "StatefulSet" and owner.get("uid") == self.uid for owner in owners):
                with contextlib.suppress(LocalApiError):
                    self.runtime.store.delete("Pod", self.namespace, obj["metadata"]["name"])

    def _reconcile(self, sts: dict) -> None:
        store = self.runtime.store
        replicas = int(sts["spec"].get("replicas", 1))
        # Scale down: the highest ordinal first, one at a time.
        with self.lock:
            extra = sorted((o for o in self.pods if o >= replicas), reverse=True)
        if extra:
            self.delete_pod(extra[0])
            return
        with self.lock:
            pods = list(self.pods.items())
        for ordinal, pod in pods:
            # A Pod deleted through the API: kubelet stops it, the controller makes a new one.
            if not pod.terminating.is_set() and pod.finished.is_set() is False and store.get("Pod", self.namespace, pod.name) is None and pod.thread.is_alive():
                threading.Thread(target=self.delete_pod, args=(ordinal,), daemon=True).start()
        # A pod whose kubelet failed (its setup raised) is made again after a back-off.
        for ordinal, pod in pods:
            if pod.finished.is_set() and not pod.terminating.is_set() and time.monotonic() - pod.finished_at > self.runtime.options.backoff_max:
                with self.lock:
                    if self.pods.get(ordinal) is pod:
                        del self.pods[ordinal]
        ready_count = 0
        for ordinal in range(replicas):
            with self.lock:
                if ordinal in self.stopped_ordinals or ordinal in self.paused_ordinals:
                    if self.ordered:
                        break
                    continue
                pod = self.pods.get(ordinal)
                if pod is None:
                    # Checked under the lock that stop_all takes to collect the pods: none comes after.
                    if self.runtime.shutdown.is_set():
                        return
                    pod = Pod(self, ordinal, sts["spec"]["template"])
                    self.pods[ordinal] = pod
                    pod.start()
                    if self.ordered:
                        break
                    continue
            if pod.ready:
                ready_count += 1
            elif self.ordered:
                break
        with self.lock:
            count = len(self.pods)
        status = {
            "replicas": count,
            "readyReplicas": ready_count,
            "availableReplicas": ready_count,
            "currentReplicas": count,
            "updatedReplicas": count,
            # The spec this pass read; a changed template reaches only pods made from now on (OnDelete).
            "observedGeneration": int(sts["metadata"].get("generation", 1)),
        }
        current = store.get("StatefulSet", self.namespace, self.name)
        if current is None or current["metadata"].get("uid", "") != self.uid:
            return
        if current.get("status") != {**(current.get("status") or {}), **status}:
            try:
                store.patch_merge("StatefulSet", self.namespace, self.name, {"status": status})
            except LocalApiError as error:
                if error.status != 404:
                    raise


class Runtime:
    """The store of objects, the StatefulSet controllers on it, and the control socket."""

    def __init__(self, state_dir: str, manifest_dir: str | None, options: Options, replicas: int | None = None, home_namespace: str = "default") -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.options = options
        self.reaper = Reaper()
        self.store = LocalApiStore(os.path.join(self.state_dir, "api"))
        user = pwd.getpwnam(OS_USER)
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self.shutdown = threading.Event()
        self.controllers: dict[tuple[str, str], StatefulSetController] = {}
        self.controllers_lock = threading.Lock()
        # (namespace, name) -> resourceVersion of a StatefulSet that no controller could run: logged once.
        self.refused: dict[tuple[str, str], str] = {}
        self.addresses: dict[tuple[str, str], str] = {}
        self.address_lock = threading.Lock()
        # (namespace, claim) -> the PersistentVolumeClaim object that a volume directory was made for.
        self.claims: dict[tuple[str, str], dict] = {}
        # Claims deleted while a pod uses them (logged once).
        self.protected: set[tuple[str, str]] = set()
        self.volume_lock = threading.RLock()
        self.slot, self.slot_socket = self._claim_slot()
        self.spare_addresses = self._address_range()
        self.services = ServiceProxies(self.store, self.slot, self.log, self.refresh_hosts)
        self.log_file = open(os.path.join(self.state_dir, "daemon.log"), "a", encoding="utf-8")  # pylint: disable=consider-using-with
        # This runtime's own cgroup, recorded in runtime.json so that `down` removes it even after
        # the daemon died; None (and why) when the machine offers no freezer: pods run, unfreezable.
        self.freezer, self.freezer_problem = Freezer.create()
        if self.freezer is None:
            self.log(f"no cgroup freezer, freeze is unavailable: {self.freezer_problem}")
        try:
            imported = import_manifests(self.store, manifest_dir, replicas) if manifest_dir else None
            # runtime.json names the first StatefulSet imported; an empty runtime's namespace is the one it was given.
            self.namespace: str = imported["metadata"]["namespace"] if imported else home_namespace
            self.sts_name: str | None = imported["metadata"]["name"] if imported else None
            self._write_runtime_info(manifest_dir)
        except BaseException:
            if self.freezer is not None:
                with contextlib.suppress(FreezerError):
                    self.freezer.remove()
            raise

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

    def _address_range(self) -> Iterator[str]:
        """The slot's loopback addresses, in the order pods get them: first the MAX_ORDINALS addresses
        of 127.0.0.0/24 that runtimes have always used, then a /16 of the slot's own."""
        first = 10 + MAX_ORDINALS * self.slot
        for offset in range(MAX_ORDINALS):
            yield f"127.0.0.{first + offset}"
        for high in range(256):
            for low in range(10, 250):
                yield f"127.{EXTRA_ADDRESS_OCTET + self.slot}.{high}.{low}"

    def pod_ip(self, namespace: str, pod: str) -> str:
        """The address of pod ``namespace/pod``, the same for as long as the daemon runs."""
        with self.address_lock:
            address = self.addresses.get((namespace, pod))
            if address is None:
                address = next(self.spare_addresses, None)
                if address is None:
                    raise RuntimeError(f"the loopback range of runtime slot {self.slot} is used up")
                self.addresses[(namespace, pod)] = address
            return address

    def namespace_dir(self, namespace: str) -> str:
        return self.state_dir if namespace == self.namespace else os.path.join(self.state_dir, "namespaces", namespace)

    def pod_dir(self, namespace: str, pod: str) -> str:
        return os.path.join(self.namespace_dir(namespace), "pods", pod)

    def claim_dir(self, namespace: str, claim: str) -> str:
        return os.path.join(self.namespace_dir(namespace), "volumes", claim)

    def cgroup_name(self, namespace: str, pod: str) -> str:
        # "_" is in no Kubernetes name: a pod of another namespace never takes the name of one of ours.
        return pod if namespace == self.namespace else f"{namespace}_{pod}"

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

    def _write_runtime_info(self, manifest_dir: str | None) -> None:
        if self.sts_name:
            # The imported StatefulSet's pods take the slot's first addresses, as they always have.
            pod_ips = {f"{self.sts_name}-{i}": self.pod_ip(self.namespace, f"{self.sts_name}-{i}") for i in range(MAX_ORDINALS)}
        else:
            pod_ips = {}
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
            "namespace": self.namespace,
            "statefulset": self.sts_name,
            "manifest_dir": os.path.abspath(manifest_dir) if manifest_dir else None,
            "slot": self.slot,
            "daemon_pid": os.getpid(),
            "freezer": self.freezer.describe() if self.freezer else None,
            "pod_ips": pod_ips,
        }
        atomic_write(os.path.join(self.state_dir, "runtime.json"), json.dumps(runtime_info, indent=2) + "\n")

    # -- objects the kubelet writes ----------------------------------------------------------

    def ensure_claim(self, namespace: str, claim: str, template: dict) -> None:
        obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace, "labels": dict((template.get("metadata") or {}).get("labels") or {})},
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
            self.store.delete("Pod", pod.namespace, pod.name)
            self.store.create(obj)

    def publish_pod(self, pod: Pod, status: dict) -> None:
        if pod.terminating.is_set() and not pod.running:
            return
        with contextlib.suppress(LocalApiError):
            self.store.patch_merge("Pod", pod.namespace, pod.name, {"status": status})

    # -- claims and their volume directories ---------------------------------------------------

    def track_claim(self, namespace: str, claim: str) -> None:
        """Records the claim object that the volume directory of ``claim`` now belongs to (nothing
        without one: a directory that no claim object stands for is never removed)."""
        with self.volume_lock:
            obj = self.store.get("PersistentVolumeClaim", namespace, claim)
            if obj is not None:
                self.claims[(namespace, claim)] = obj

    def reclaim(self, namespace: str, claim: str, other_than: Pod | None = None) -> None:
        """Removes the volume directory of a claim whose object was deleted (or replaced by a new one),
        once no pod but ``other_than`` uses it: what a dynamic provisioner with reclaim policy Delete
        does once the pvc-protection finalizer lets the claim go. A claim bound to a PersistentVolume
        whose reclaim policy is Retain keeps its directory."""
        key = (namespace, claim)
        with self.volume_lock:
            bound = self.claims.get(key)
            if bound is None:
                return
            current = self.store.get("PersistentVolumeClaim", namespace, claim)
            if current is not None and current["metadata"].get("uid") == bound["metadata"].get("uid"):
                return
            users = sorted(pod.name for pod in self.live_pods() if pod is not other_than and key in pod.claim_keys)
            if users:
                if key not in self.protected:
                    self.protected.add(key)
                    self.log(f"claim {namespace}/{claim} deleted while pods {users} use it: its volume stays until they are gone")
                return
            del self.claims[key]
            self.protected.discard(key)
            volume = (bound.get("spec") or {}).get("volumeName")
            persistent_volume = self.store.get("PersistentVolume", CLUSTER_SCOPE, volume) if volume else None
            if persistent_volume and (persistent_volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Retain":
                self.log(f"claim {namespace}/{claim} deleted: volume {volume} is retained, and so is its directory")
                return
            shutil.rmtree(self.claim_dir(namespace, claim), ignore_errors=True)
            self.log(f"claim {namespace}/{claim} deleted: its volume directory is removed")

    def reclaim_released(self) -> None:
        with self.volume_lock:
            for namespace, claim in list(self.claims):
                self.reclaim(namespace, claim)

    def delete_volume(self, namespace: str, claim: str) -> None:
        """The claim's directory and object, at once (the CLI's delete-volume, for a pod it stopped)."""
        with self.volume_lock:
            shutil.rmtree(self.claim_dir(namespace, claim), ignore_errors=True)
            with contextlib.suppress(LocalApiError):
                self.store.delete("PersistentVolumeClaim", namespace, claim)
            self.claims.pop((namespace, claim), None)
            self.protected.discard((namespace, claim))

    # -- the controllers -----------------------------------------------------------------------

    def discover(self) -> None:
        """Starts a controller for every StatefulSet of the store that has none."""
        with self.controllers_lock:
            if self.shutdown.is_set():
                return
            for namespace in self.store.namespaces():
                for sts in self.store.list("StatefulSet", namespace):
                    key = (namespace, sts["metadata"]["name"])
                    if key in self.controllers:
                        continue
                    version = str(sts["metadata"].get("resourceVersion", ""))
                    if self.refused.get(key) == version:
                        continue
                    sts["metadata"]["namespace"] = namespace
                    try:
                        controller = StatefulSetController(self, sts)
                    except (KeyError, TypeError, ValueError, AttributeError) as error:
                        self.refused[key] = version
                        self.log(f"statefulset {namespace}/{key[1]}: not run: {error!r}")
                        continue
                    self.refused.pop(key, None)
                    self.controllers[key] = controller
                    controller.thread.start()
                    self.log(f"statefulset {namespace}/{key[1]}: controller started")

    def forget_controller(self, controller: StatefulSetController) -> None:
        with self.controllers_lock:
            if self.controllers.get((controller.namespace, controller.name)) is controller:
                del self.controllers[(controller.namespace, controller.name)]

    def run_controllers(self) -> None:
        while not self.shutdown.wait(DISCOVERY_PERIOD):
            try:
                self.discover()
                self.reclaim_released()
            except Exception as error:  # pylint: disable=broad-except
                self.log(f"controllers: {error!r}")

    def _controllers_in(self, namespace: str) -> list[StatefulSetController]:
        with self.controllers_lock:
            return [controller for (ns, _name), controller in sorted(self.controllers.items()) if ns == namespace]

    def live_pods(self) -> list[Pod]:
        with self.controllers_lock:
            controllers = list(self.controllers.values())
        return [pod for controller in controllers for pod in controller.live_pods()]

    def controller_of(self, namespace: str, pod_name: str) -> tuple[StatefulSetController, int]:
        """The controller whose pod ``pod_name`` would be, and the pod's ordinal."""
        for attempt in range(2):
            for controller in self._controllers_in(namespace):
                ordinal = controller.ordinal_of(pod_name)
                if ordinal is not None:
                    return controller, ordinal
            if attempt == 0:
                # A StatefulSet created a moment ago may have no controller yet.
                self.discover()
        if namespace == self.namespace and self.sts_name:
            raise ValueError(f"{pod_name} is not a pod of StatefulSet {self.sts_name}")
        raise ValueError(f"{pod_name} is not a pod of any StatefulSet in namespace {namespace}")

    def _kubelet_pod(self, namespace: str, pod_name: str) -> Pod | None:
        """The pod of that name that a kubelet here runs or ran last (its kubelet may have failed)."""
        for controller in self._controllers_in(namespace):
            ordinal = controller.ordinal_of(pod_name)
            if ordinal is not None:
                return controller.pod(ordinal)
        return None

    # -- what an API server calls ----------------------------------------------------------------

    def _pod_spec(self, namespace: str, pod_name: str) -> dict:
        """The spec of the Pod object, whose absence is the API server's 404."""
        obj = self.store.get("Pod", namespace, pod_name)
        if obj is None:
            raise PodLookupError(404, f'pods "{pod_name}" not found')
        return obj.get("spec") or {}

    def exec_process(self, namespace: str, pod: str, container: str, argv: list[str], stdin: bool) -> subprocess.Popen:
        """Starts ``argv`` in container ``container`` of pod ``namespace/pod`` as kubelet runs an exec:
        in the pod's namespaces and cgroup (so a freeze stops it too), as the container's user, with the
        environment the container started with, in ``/``, in a session of its own. stdout and stderr are
        pipes, stdin a pipe when ``stdin`` and /dev/null otherwise. The caller waits for the process; the
        pod's teardown kills it.

        Raises PodLookupError, checked in the API server's order: 404 ``pods "x" not found``, 400
        ``container y is not valid for pod x``, then kubelet's 500 ``container not found ("y")`` for a
        container that is not running (kubectl prints it after "unable to upgrade connection: ")."""
        spec = find_container(self._pod_spec(namespace, pod), pod, container)
        target = self._kubelet_pod(namespace, pod)
        if target is None or target.finished.is_set():
            raise PodLookupError(500, f'container not found ("{spec["name"]}")')
        return target.exec_process(spec["name"], argv, stdin)

    def container_log(self, namespace: str, pod: str, container: str, previous: bool) -> str:
        """The path of the log file of container ``container`` of pod ``namespace/pod``. One file holds
        every run of the container, a ``--- <time> localpods: starting <container>`` line before each, so
        ``previous`` (kubelet's terminated instance) names the same file once there was one.

        Raises PodLookupError: 404 ``pods "x" not found``, 400 ``container y is not valid for pod x``, and
        kubelet's 400 ``previous terminated container "y" in pod "x" not found`` and ``container "y" in
        pod "x" is waiting to start: PodInitializing``."""
        spec = find_container(self._pod_spec(namespace, pod), pod, container)
        target = self._kubelet_pod(namespace, pod)
        if target is not None:
            return target.log_path(spec["name"], previous)
        path = os.path.join(self.pod_dir(namespace, pod), "logs", spec["name"] + ".log")
        if previous:
            raise PodLookupError(400, f'previous terminated container "{spec["name"]}" in pod "{pod}" not found')
        if not os.path.isfile(path):
            raise PodLookupError(400, f'container "{spec["name"]}" in pod "{pod}" is waiting to start: PodInitializing')
        return path

    def pods_of(self, namespace: str) -> list[str]:
        """The pods that kubelets here run in ``namespace``, by StatefulSet and ordinal."""
        return [pod.name for controller in self._controllers_in(namespace) for pod in sorted(controller.live_pods(), key=lambda p: p.ordinal)]

    # -- requests from the CLI ---------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        namespace = request.get("namespace") or self.namespace
        if op == "ping":
            return {}
        if op == "down":
            threading.Thread(target=self.stop_all, daemon=True).start()
            return {}
        if op == "exec-process":
            return self._exec_to_the_end(namespace, request)
        if op == "container-log":
            return {"path": self.container_log(namespace, request["pod"], request.get("container", ""), bool(request.get("previous")))}
        if op == "pods-of":
            return {"pods": self.pods_of(namespace)}
        if "pod" not in request:
            raise ValueError(f"unknown request {op!r}")
        controller, ordinal = self.controller_of(namespace, request["pod"])
        if op == "delete-pod":
            controller.delete_pod(ordinal)
            return {}
        if op == "stop":
            with controller.lock:
                controller.stopped_ordinals.add(ordinal)
            controller.delete_pod(ordinal)
            return {}
        if op == "start":
            with controller.lock:
                controller.stopped_ordinals.discard(ordinal)
            return {}
        if op == "delete-volume":
            with controller.lock:
                controller.paused_ordinals.add(ordinal)
            try:
                controller.delete_pod(ordinal)
                self.delete_volume(namespace, f"{request.get('volume') or 'pgdata'}-{request['pod']}")
            finally:
                with controller.lock:
                    controller.paused_ordinals.discard(ordinal)
            return {}
        if op in ("freeze", "thaw"):
            return {"pids": self._set_frozen(request["pod"], controller.pod(ordinal), op == "freeze")}
        if op == "kill":
            pod = controller.pod(ordinal)
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

    def _exec_to_the_end(self, namespace: str, request: dict) -> dict:
        """exec_process over the control socket (tests, debugging): the command runs to its end with
        ``stdin`` (text, or none) as its input, or is killed after ``timeout`` seconds."""
        stdin = request.get("stdin")
        timeout = float(request.get("timeout", 60))
        proc = self.exec_process(namespace, request["pod"], request.get("container", ""), list(request.get("argv") or []), stdin is not None)
        try:
            out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ValueError(f"exec in pod {request['pod']}: no exit within {timeout:g}s, killed") from None
        return {"returncode": proc.returncode, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}

    def _set_frozen(self, pod_name: str, pod: Pod | None, frozen: bool) -> list[int]:
        if pod is None:
            raise ValueError(f"pod {pod_name} does not exist")
        if self.freezer is None:
            if not frozen:
                return []  # nothing can be frozen here, so every pod is thawed already
            raise ValueError(f"cannot freeze pod {pod_name}: this machine offers no usable cgroup freezer ({self.freezer_problem})")
        pids = pod.set_frozen(frozen)
        self.log(f"pod {pod_name}: {'frozen' if frozen else 'thawed'}, processes {pids}")
        return pids

    def refresh_hosts(self) -> None:
        """The Services' names changed: every running pod's hosts file says so."""
        for pod in self.live_pods():
            if pod.pause is not None:
                pod.refresh_hosts()

    def stop_all(self) -> None:
        self.shutdown.set()
        self.services.stop()
        # After the shutdown flag, under each controller's lock: no pod is made after these.
        with self.controllers_lock:
            controllers = list(self.controllers.values())
        pods: list[Pod] = []
        for controller in controllers:
            with controller.lock:
                pods.extend(controller.pods.values())
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

    def _record_api_server(self) -> None:
        path = os.path.join(self.state_dir, "runtime.json")
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        info.update({"api_server": self.api_server.url, "kubeconfig": self.api_server.kubeconfig})
        atomic_write(path, json.dumps(info, indent=2) + "\n")

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
                    if isinstance(error, PodLookupError):
                        response["status"] = error.status
                self.wfile.write((json.dumps(response) + "\n").encode())

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        reaper = threading.Thread(target=self.reaper.run, daemon=True)
        reaper.start()
        # The Services' addresses exist before the first pod writes its hosts file.
        self.services.start()
        # The StatefulSets imported have their controllers before the control socket answers.
        self.discover()
        # The API server and its kubeconfig exist before the control socket answers, so `up` hands out a working kubeconfig.
        self.api_server = ApiServer(self.state_dir, self.store, pods=self)
        self.api_server.start()
        self._record_api_server()
        sock_path = os.path.join(self.state_dir, "control.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock_path)
        server = Server(sock_path, Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=self.run_controllers, name="controllers", daemon=True).start()
        try:
            self.done.wait()
        finally:
            if not self.done.is_set():
                self.stop_all()
            server.shutdown()
            server.server_close()
            self.api_server.stop()
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
