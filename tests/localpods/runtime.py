"""The daemon of the local pod runtime: the controllers, and the kubelet (kubelet.py) of their pods.

One process (started by ``cli.py up``) owns every process of every pod. It is a child subreaper, so
the orphans of a pod (PostgreSQL backends whose postmaster was killed) are reaped here at once
instead of by PID 1 seconds later. Everything lives under one state directory.

The controllers react to the object store only (``LocalApiStore`` under ``api/``), whoever writes it:
the importer of a render directory (``import_manifests``, run once before the controllers start),
the CLI, the modules, or an API server in this process. One controller runs per workload object of
any namespace, from its creation to its deletion: ``StatefulSetController`` here, the Deployment,
ReplicaSet, Job and CronJob controllers in workloads.py. The claims a StatefulSet provisions are
removed when their PersistentVolumeClaim object is, once no pod uses them.

Paths: the pods and volumes of the runtime's own namespace (``runtime.json``'s ``namespace``) are
``pods/<pod>`` and ``volumes/<claim>``; those of any other namespace are below
``namespaces/<namespace>/``. Pod addresses come from the runtime's loopback range, one per pod name
for as long as the daemon runs.

``Runtime.exec_process``, ``Runtime.container_log`` and ``Runtime.pods_of`` are what an API server
calls to serve exec and logs; they raise ``PodLookupError`` with the API server's or kubelet's words.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import pwd
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
from tests.localpods.freezer import Freezer, FreezerError
from tests.localpods.images import ImageMap
from tests.localpods.kubelet import (
    Options,
    Pod,
    PodIdentity,
    PodLookupError,
    atomic_write,
    find_container,
    now,
    pids_in_namespace,
    process_state,
)
from tests.localpods.services import ServiceProxies
from tests.localpods.workloads import (
    CronJobController,
    DeploymentController,
    JobController,
    ReplicaSetController,
    WorkloadController,
    statefulset_pod_to_update,
    statefulset_revision_of_new_pod,
    template_hash,
)

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
# The one node of the runtime, as spec.nodeName and the downward API give it.
NODE_NAME = "localpods"


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

    kind = "StatefulSet"

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
        self.pods: dict[int, Pod] = {}
        self.stopped_ordinals: set[int] = set()
        self.paused_ordinals: set[int] = set()
        self.lock = threading.RLock()
        # Revision name (``<name>-<template hash>``) -> its pod template, as ControllerRevisions keep them.
        self.revisions: dict[str, dict] = {}
        self.thread = threading.Thread(target=self.run, name=f"statefulset-{self.namespace}-{self.name}", daemon=True)
        # Addresses in ordinal order: the first StatefulSet of an empty runtime gets those an imported one would.
        for ordinal in range(MAX_ORDINALS):
            runtime.pod_ip(self.namespace, f"{self.name}-{ordinal}")

    def identity(self, ordinal: int, revision: str) -> PodIdentity:
        """What this StatefulSet makes of its pod ``ordinal`` at ``revision``: name, labels, claims
        and the names of its governing Service's members."""
        name = f"{self.name}-{ordinal}"
        return PodIdentity(
            namespace=self.namespace,
            name=name,
            owner_reference={
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": self.name,
                "uid": self.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            },
            labels={
                "statefulset.kubernetes.io/pod-name": name,
                "apps.kubernetes.io/pod-index": str(ordinal),
                "controller-revision-hash": revision,
            },
            hostname=name,
            subdomain=self.service_name,
            claim_templates={t["metadata"]["name"]: (f"{t['metadata']['name']}-{name}", t) for t in self.claim_templates},
            host_lines=lambda: self.member_host_lines(ordinal),
        )

    def member_host_lines(self, own: int) -> list[str]:
        """The members of the governing Service, those that do not exist yet included: the hosts file
        is written once, and a member's address never changes while the daemon runs."""
        svc, ns = self.service_name, self.namespace
        lines = []
        for ordinal in sorted(set(range(MAX_ORDINALS)) | {own}):
            pod = f"{self.name}-{ordinal}"
            names = [f"{pod}.{svc}.{ns}.svc.cluster.local", f"{pod}.{svc}.{ns}.svc", f"{pod}.{svc}.{ns}", f"{pod}.{svc}"]
            if ordinal == own:
                names.append(pod)
            lines.append(self.runtime.pod_ip(ns, pod) + "\t" + " ".join(names))
        return lines

    def ordinal_of(self, pod_name: str) -> int | None:
        prefix = self.name + "-"
        suffix = pod_name[len(prefix) :]
        if pod_name.startswith(prefix) and suffix.isdigit() and str(int(suffix)) == suffix:
            return int(suffix)
        return None

    def pod(self, ordinal: int) -> Pod | None:
        with self.lock:
            return self.pods.get(ordinal)

    def all_pods(self) -> list[Pod]:
        with self.lock:
            return list(self.pods.values())

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

    def _revision(self, template: dict) -> str:
        """The revision of a pod template, recorded as a ControllerRevision the first time it is seen."""
        name = f"{self.name}-{template_hash(template)}"
        if name not in self.revisions:
            self.revisions[name] = json.loads(json.dumps(template))
            number = len(self.revisions)
            revision = {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {**((template.get("metadata") or {}).get("labels") or {}), "controller.kubernetes.io/hash": name.rsplit("-", 1)[1]},
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": self.name, "uid": self.uid, "controller": True, "blockOwnerDeletion": True}
                    ],
                },
                "data": {"spec": {"template": template}},
                "revision": number,
            }
            with contextlib.suppress(LocalApiError):
                self.runtime.store.create(revision)
        return name

    def _reconcile(self, sts: dict) -> None:
        store = self.runtime.store
        replicas = int(sts["spec"].get("replicas", 1))
        strategy = sts["spec"].get("updateStrategy") or {}
        update_revision = self._revision(sts["spec"]["template"])
        current_revision = (sts.get("status") or {}).get("currentRevision")
        if current_revision not in self.revisions:
            current_revision = update_revision
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
                    revision = statefulset_revision_of_new_pod(ordinal, strategy, current_revision, update_revision)
                    pod = Pod(self.runtime, self.identity(ordinal, revision), self.revisions[revision])
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
            members = {
                o: (p.identity.labels["controller-revision-hash"], p.ready)
                for o, p in self.pods.items()
                if not p.terminating.is_set() and not p.deletion_requested
            }
            target = statefulset_pod_to_update(members, replicas, strategy, update_revision)
            if target is not None:
                self.pods[target].deletion_requested = True
        if target is not None and not self.runtime.shutdown.is_set():
            # One member at a time: it comes back at the update revision before the next goes.
            self.runtime.log(f"statefulset {self.namespace}/{self.name}: rolling {self.name}-{target} to {update_revision}")
            threading.Thread(target=self.delete_pod, args=(target,), daemon=True).start()
        updated = sum(1 for revision, _ready in members.values() if revision == update_revision)
        if updated == replicas and len(members) == replicas:
            current_revision = update_revision
        status = {
            "replicas": count,
            "readyReplicas": ready_count,
            "availableReplicas": ready_count,
            "currentReplicas": sum(1 for revision, _ready in members.values() if revision == current_revision),
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
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


CONTROLLER_KINDS: dict[str, type] = {
    "StatefulSet": StatefulSetController,
    "Deployment": DeploymentController,
    "ReplicaSet": ReplicaSetController,
    "Job": JobController,
    "CronJob": CronJobController,
}


class Runtime:
    """The store of objects, the StatefulSet controllers on it, and the control socket."""

    def __init__(self, state_dir: str, manifest_dir: str | None, options: Options, replicas: int | None = None, home_namespace: str = "default") -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.options = options
        # What stands in for each image here (tests/localpods/images.py); a bad map fails `up` at once.
        self.images: ImageMap = options.images if options.images is not None else ImageMap()
        self.reaper = Reaper()
        self.store = LocalApiStore(os.path.join(self.state_dir, "api"))
        user = pwd.getpwnam(OS_USER)
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self.shutdown = threading.Event()
        # (kind, namespace, name) -> the controller of that workload object.
        self.controllers: dict[tuple[str, str, str], StatefulSetController | WorkloadController] = {}
        self.controllers_lock = threading.Lock()
        # (namespace, name) -> resourceVersion of a StatefulSet that no controller could run: logged once.
        self.refused: dict[tuple[str, str, str], str] = {}
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

    def node_of(self, pod: Pod) -> str:  # pylint: disable=unused-argument
        """The node a pod runs on: the runtime's one node."""
        return NODE_NAME

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
        """Starts a controller for every workload object of the store that has none."""
        with self.controllers_lock:
            if self.shutdown.is_set():
                return
            for namespace in self.store.namespaces():
                for kind, controller_class in CONTROLLER_KINDS.items():
                    for obj in self.store.list(kind, namespace):
                        key = (kind, namespace, obj["metadata"]["name"])
                        if key in self.controllers:
                            continue
                        version = str(obj["metadata"].get("resourceVersion", ""))
                        if self.refused.get(key) == version:
                            continue
                        obj["metadata"]["namespace"] = namespace
                        try:
                            controller = controller_class(self, obj)
                        except (KeyError, TypeError, ValueError, AttributeError) as error:
                            self.refused[key] = version
                            self.log(f"{kind.lower()} {namespace}/{key[2]}: not run: {error!r}")
                            continue
                        self.refused.pop(key, None)
                        self.controllers[key] = controller
                        controller.thread.start()
                        self.log(f"{kind.lower()} {namespace}/{key[2]}: controller started")

    def forget_controller(self, controller: StatefulSetController | WorkloadController) -> None:
        key = (controller.kind, controller.namespace, controller.name)
        with self.controllers_lock:
            if self.controllers.get(key) is controller:
                del self.controllers[key]

    def run_controllers(self) -> None:
        while not self.shutdown.wait(DISCOVERY_PERIOD):
            try:
                self.discover()
                self.reclaim_released()
            except Exception as error:  # pylint: disable=broad-except
                self.log(f"controllers: {error!r}")

    def _controllers_in(self, namespace: str) -> list[StatefulSetController]:
        """The StatefulSet controllers of ``namespace``, by name."""
        with self.controllers_lock:
            return [controller for (kind, ns, _name), controller in sorted(self.controllers.items()) if ns == namespace and kind == "StatefulSet"]

    def _workloads_in(self, namespace: str) -> list[WorkloadController]:
        """The controllers of ``namespace`` that own pods by name (ReplicaSets, Jobs), by kind and name."""
        with self.controllers_lock:
            return [
                c
                for (kind, ns, _name), c in sorted(self.controllers.items())
                if ns == namespace and kind != "StatefulSet" and isinstance(c, WorkloadController)
            ]

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
        for workload in self._workloads_in(namespace):
            pod = workload.pod_named(pod_name)
            if pod is not None:
                return pod
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
        """The pods that kubelets here run in ``namespace``: by StatefulSet and ordinal, then the others by name."""
        members = [
            pod.name
            for controller in self._controllers_in(namespace)
            for pod in sorted(controller.live_pods(), key=lambda p, c=controller: c.ordinal_of(p.name))
        ]
        return members + sorted(pod.name for workload in self._workloads_in(namespace) for pod in workload.live_pods())

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
        if op in ("delete-pod", "freeze", "thaw", "hold-config", "kill"):
            workload = next((w for w in self._workloads_in(namespace) if w.pod_named(request["pod"]) is not None), None)
            if workload is not None:
                # A pod of a ReplicaSet or a Job: the verbs that need no ordinal.
                if op == "delete-pod":
                    workload.delete_pod(request["pod"])
                    return {}
                return self._pod_verb(op, request, workload.pod_named(request["pod"]))
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
        if op in ("freeze", "thaw", "hold-config", "kill"):
            return self._pod_verb(op, request, controller.pod(ordinal))
        raise ValueError(f"unknown request {op!r}")

    def _pod_verb(self, op: str, request: dict, pod: Pod | None) -> dict:
        """freeze, thaw, hold-config and kill, on a pod of any controller."""
        if op == "hold-config":
            # A pod whose kubelet never refreshes its ConfigMap and Secret volumes until released.
            if pod is None:
                raise ValueError(f"pod {request['pod']} does not exist")
            pod.config_view_held = bool(request.get("hold", True))
            return {}
        if op in ("freeze", "thaw"):
            return {"pids": self._set_frozen(request["pod"], pod, op == "freeze")}
        if op == "kill":
            main = pod.container(pod.default_container) if pod is not None else None
            if main is None or not main.running or main.proc is None:
                raise ValueError(f"pod {request['pod']} has no running container")
            signum = getattr(signal, "SIG" + request.get("signal", "KILL").upper().removeprefix("SIG"))
            if request.get("target", "postgres") == "container":
                targets = [main.proc.pid]
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
            pods.extend(controller.all_pods())
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
