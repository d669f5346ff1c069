# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A simulated cluster for the procedure's unit tests (no test here; imported by the tests).

The API side is the local pod runtime's object store (optimistic concurrency as the API server's);
only exec is simulated:
``psql`` answers ``_replication.STATUS_SQL`` with the JSON shape PostgreSQL 15 produces, and
``ctl.sh`` answers every verb with the JSON and exit codes of ``roles/pg_cluster/files/scripts/ctl.sh``.
The simulation keeps the invariants the real servers have (a held, stopped primary ships its WAL
up to the shutdown checkpoint to its streaming standbys; promotion starts a new timeline; a
standby follows whom its conninfo names), so the procedure's decisions can be checked end to end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from typing import Any, Callable

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ClusterBackend,
    ClusterError,
    Conflict,
    ExecResult,
    NotFound,
    PodUnavailable,
    StdinLine,
)
from tests.localpods.api.store import LocalApiError, LocalApiStore
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import lsn_from_int, lsn_to_int

NAMESPACE = "postgres"
NAME = "postgres"
SYSID = "7712541593763108730"
CTL = "/etc/postgresql/scripts/ctl.sh"


@dataclasses.dataclass
class Member:
    name: str
    running: bool = True
    in_recovery: bool = True
    hold: bool = False
    epoch: int = 1
    timeline: int = 1
    #: primary: current WAL position; standby: received and replayed position
    lsn: int = 0x3000000
    upstream: str | None = None
    paused: bool = False
    #: container gone (exec impossible)
    gone: bool = False
    #: end of WAL at its last clean shutdown
    checkpoint: int | None = None
    cluster_state: str = "in production"
    standby_signal: bool = False


class FakeCluster:
    """Three members by default, ``postgres-0`` primary; ``hooks`` may interrupt any exec."""

    def __init__(self, root: str, members: int = 3) -> None:
        self.root = root
        self.store = LocalApiStore(os.path.join(root, "api"))
        self.members: dict[str, Member] = {}
        names = [f"{NAME}-{i}" for i in range(members)]
        for i, name in enumerate(names):
            if i == 0:
                self.members[name] = Member(name, in_recovery=False)
            else:
                self.members[name] = Member(name, upstream=names[0], standby_signal=True, cluster_state="in archive recovery")
        self.sync_names = "ANY 1 (" + ", ".join(f'"{name}"' for name in names) + ")"
        self.calls: list[tuple[str, list[str]]] = []
        # The procedure runs some commands in parallel, as the real pods do.
        self.lock = threading.RLock()
        #: called before every exec with (pod, argv); may raise to simulate a failure or a kill
        self.before_exec: Callable[[str, list[str]], None] | None = None
        self._create_objects(names)

    # -- API objects -------------------------------------------------------------------------

    def _create_objects(self, names: list[str]) -> None:
        labels = {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": NAME}
        self.store.create(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                "spec": {"replicas": len(names), "selector": {"matchLabels": labels}},
            }
        )
        for i, name in enumerate(names):
            self.store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": NAMESPACE,
                        "labels": dict(labels, **{"statefulset.kubernetes.io/pod-name": name, "dbonk8s.io/role": "primary" if i == 0 else "replica"}),
                    },
                    "status": {"phase": "Running", "podIP": f"127.0.0.{10 + i}", "conditions": [{"type": "Ready", "status": "True"}]},
                }
            )
        self.store.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{NAME}-primary", "namespace": NAMESPACE, "labels": labels},
                "data": {"primary": names[0], "epoch": "1"},
            }
        )
        self.store.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{NAME}-rw", "namespace": NAMESPACE},
                "spec": {"selector": {"statefulset.kubernetes.io/pod-name": names[0]}},
            }
        )

    def backend(self) -> "FakeBackend":
        return FakeBackend(self)

    def record(self) -> dict:
        return self.store.get("ConfigMap", NAMESPACE, f"{NAME}-primary")

    def service_target(self) -> str:
        return self.store.get("Service", NAMESPACE, f"{NAME}-rw")["spec"]["selector"]["statefulset.kubernetes.io/pod-name"]

    def role_labels(self) -> dict[str, str]:
        return {pod["metadata"]["name"]: pod["metadata"]["labels"].get("dbonk8s.io/role") for pod in self.store.list("Pod", NAMESPACE)}

    def primaries(self) -> list[str]:
        return [m.name for m in self.members.values() if m.running and not m.in_recovery]

    def write(self, nbytes: int = 0x1000) -> None:
        """A commit on the primary, shipped to its streaming standbys unless their replay is paused."""
        (primary,) = self.primaries()
        self.members[primary].lsn += nbytes
        self.ship()

    def ship(self) -> None:
        for member in self.members.values():
            upstream = self.members.get(member.upstream or "")
            if not member.running or not member.in_recovery or upstream is None or member.paused:
                continue
            if upstream.running and not upstream.in_recovery and upstream.timeline >= member.timeline:
                member.lsn = max(member.lsn, upstream.lsn)
                member.timeline = upstream.timeline

    # -- exec --------------------------------------------------------------------------------

    def exec(self, pod: str, argv: list[str], stdin: StdinLine | None = None) -> ExecResult:
        if stdin is not None:
            # An armed command (ctl.sh promote EPOCH TIMEOUT TOLD_WITHIN) waits, without the lock,
            # for its line; anything but "go" changes nothing. It counts as called once told.
            line = stdin.wait(float(argv[-1]))
            if line != "go":
                return ExecResult(6, "", f"ctl.sh: not told to promote ({line!r}): nothing changed\n")
        with self.lock:
            self.calls.append((pod, list(argv)))
            if self.before_exec is not None:
                self.before_exec(pod, argv)
        if argv[1:2] == ["follow"] and len(argv) == 5 and int(argv[4]) > 0:
            # Waits (without the lock) until the new primary is out of recovery, as ctl.sh does.
            deadline = time.monotonic() + float(argv[4])
            while time.monotonic() < deadline:
                with self.lock:
                    if not self.members[argv[2]].in_recovery:
                        break
                time.sleep(0.002)
            else:
                return ExecResult(1, "", f"ctl.sh: {argv[2]} did not come out of recovery within {argv[4]}s\n")
        if argv[1:2] == ["replayed"] and len(argv) == 3:
            # Waits (without the lock) for its upstream to go away, as ctl.sh does.
            deadline = time.monotonic() + float(argv[2])
            while time.monotonic() < deadline:
                with self.lock:
                    upstream = self.members.get(self.members[pod].upstream or "")
                    if upstream is None or not upstream.running:
                        break
                time.sleep(0.002)
        with self.lock:
            return self._exec(pod, argv)

    def _exec(self, pod: str, argv: list[str]) -> ExecResult:
        member = self.members[pod]
        if member.gone:
            raise PodUnavailable(f"pod {pod} is not available for exec: localpods: container postgres is not running")
        if argv[0] == "psql":
            return self._psql(member)
        assert argv[0] == CTL, argv
        handler = getattr(self, "_ctl_" + argv[1])
        try:
            out = handler(member, *argv[2:])
        except Refusal as refusal:
            return ExecResult(refusal.rc, "", f"ctl.sh: {refusal}\n")
        self.ship()
        return ExecResult(0, json.dumps(out) + "\n", "")

    def _psql(self, member: Member) -> ExecResult:
        if not member.running:
            return ExecResult(2, "", 'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: No such file or directory\n')
        lsn = lsn_from_int(member.lsn)
        status: dict[str, Any] = {
            "server_version_num": 150018,
            "system_identifier": SYSID,
            "in_recovery": member.in_recovery,
            "current_lsn": None if member.in_recovery else lsn,
            "timeline": member.timeline,
            "receive_lsn": lsn if member.in_recovery else None,
            "replay_lsn": lsn if member.in_recovery else None,
            "replay_paused": member.paused if member.in_recovery else None,
            "replay_delay_seconds": 0 if member.in_recovery else None,
            "last_replay_timestamp": None,
            "wal_receiver": None,
            "replication": [],
            "slots": [],
            "archive_mode": "off",
            "archiver": None,
            "synchronous_standby_names": self.sync_names,
            "pending_restart": [],
        }
        upstream = self.members.get(member.upstream or "")
        if member.in_recovery and upstream is not None and upstream.running:
            status["wal_receiver"] = {"status": "streaming", "conninfo": f"host={upstream.name}.{NAME} port=5432", "sender_host": f"{upstream.name}.{NAME}"}
        if not member.in_recovery:
            for other in self.members.values():
                if other.running and other.in_recovery and other.upstream == member.name:
                    status["replication"].append(
                        {
                            "application_name": other.name,
                            "client_addr": None,
                            "state": "streaming",
                            "sync_state": "quorum",
                            "sent_lsn": lsn,
                            "replay_lsn": lsn_from_int(other.lsn),
                        }
                    )
        return ExecResult(0, json.dumps(status) + "\n", "")

    # -- ctl.sh verbs (mirroring ctl.sh) -----------------------------------------------------

    def _server(self, member: Member) -> dict[str, Any]:
        lsn = lsn_from_int(member.lsn)
        return {
            "in_recovery": member.in_recovery,
            "timeline": member.timeline,
            "current_lsn": None if member.in_recovery else lsn,
            "receive_lsn": lsn if member.in_recovery else None,
            "replay_lsn": lsn if member.in_recovery else None,
            "replay_paused": member.paused if member.in_recovery else None,
            "wal_receiver": "streaming" if member.in_recovery and member.upstream and self.members[member.upstream].running else None,
            "primary_conninfo_host": f"{member.upstream}.{NAME}" if member.upstream else None,
            "synchronous_standby_names": self.sync_names,
        }

    def _ctl_state(self, member: Member) -> dict[str, Any]:
        out = {
            "pod": member.name,
            "running": member.running,
            "accepting": member.running,
            "hold": member.hold,
            "phase": "running" if member.running else ("held" if member.hold else "preparing"),
            "epoch": member.epoch,
            "standby_signal": member.standby_signal,
            "controldata": {"state": member.cluster_state, "checkpoint_lsn": lsn_from_int(member.checkpoint or member.lsn), "timeline": member.timeline},
        }
        out.update(self._server(member) if member.running else {"in_recovery": None})
        return out

    def _ctl_hold(self, member: Member) -> dict[str, Any]:
        changed = not member.hold
        member.hold = True
        return {"hold": True, "changed": changed}

    def _ctl_release(self, member: Member) -> dict[str, Any]:
        changed = member.hold
        member.hold = False
        if changed and not member.running:
            # The supervisor starts PostgreSQL as configured on disk.
            member.running = True
            member.in_recovery = member.standby_signal
            member.cluster_state = "in archive recovery" if member.standby_signal else "in production"
        return {"hold": False, "changed": changed}

    def _ctl_checkpoint(self, member: Member) -> dict[str, Any]:
        if not member.running:
            raise Refusal(3, "PostgreSQL is not accepting connections")
        return {"checkpoint_lsn": lsn_from_int(member.lsn)}

    def _ctl_stop(self, member: Member, timeout: str = "60") -> dict[str, Any]:
        member.hold = True
        changed = member.running
        if member.running:
            # The walsenders ship everything, shutdown checkpoint included, before postmaster exits.
            member.checkpoint = member.lsn
            member.lsn += 0x28
            self.ship()
            member.running = False
            member.cluster_state = "shut down in recovery" if member.in_recovery else "shut down"
        return {
            "stopped": True,
            "changed": changed,
            "hold": True,
            "checkpoint_lsn": lsn_from_int(member.checkpoint or member.lsn),
            "timeline": member.timeline,
            "cluster_state": member.cluster_state,
        }

    def _ctl_replayed(self, member: Member, timeout: str, lsn: str = "") -> dict[str, Any]:
        if not member.running:
            raise Refusal(3, "PostgreSQL is not accepting connections")
        if not member.in_recovery:
            raise Refusal(4, "this member is not a standby")
        upstream = self.members.get(member.upstream or "")
        done = member.lsn > lsn_to_int(lsn) if lsn else (upstream is None or not upstream.running)
        if not done:
            raise Refusal(5, f"not replayed within {timeout}s past {lsn}: replayed {lsn_from_int(member.lsn)}")
        return self._server(member)

    def _ctl_promote(self, member: Member, epoch: str, timeout: str = "60", told_within: str = "") -> dict[str, Any]:
        if not member.running:
            raise Refusal(3, "PostgreSQL is not accepting connections: cannot promote")
        if member.epoch > int(epoch):
            raise Refusal(1, f"this member is configured for epoch {member.epoch}, newer than {epoch}: refusing a stale promotion")
        member.epoch = int(epoch)
        changed = member.in_recovery
        if member.in_recovery:
            member.in_recovery = False
            member.standby_signal = False
            member.paused = False
            member.timeline = max(m.timeline for m in self.members.values()) + 1
            member.upstream = None
            member.cluster_state = "in production"
        return dict({"changed": changed, "epoch": int(epoch)}, **self._server(member))

    def _ctl_follow(self, member: Member, primary: str, epoch: str, wait: str = "0", told_within: str = "") -> dict[str, Any]:
        if primary == member.name:
            raise Refusal(2, "a member cannot follow itself")
        if member.epoch > int(epoch):
            raise Refusal(1, f"this member is configured for epoch {member.epoch}, newer than {epoch}: refusing a stale repoint")
        rewound = False
        if member.running:
            if not member.in_recovery:
                raise Refusal(4, "this member runs as a primary: stop it first (ctl.sh stop)")
            mode = "reload"
            changed = member.upstream != primary
        else:
            if not member.hold:
                raise Refusal(3, "PostgreSQL is not running and not held")
            mode = "stopped"
            changed = True
            if not member.standby_signal:
                new = self.members[primary]
                # Diverged when it has WAL past the point where the new timeline forked.
                rewound = member.lsn > new.lsn if new.in_recovery is False else False
                if rewound:
                    member.lsn = min(member.lsn, new.lsn)
            member.standby_signal = True
            member.in_recovery = True
        member.upstream = primary
        changed = changed or member.epoch != int(epoch)
        member.epoch = int(epoch)
        return {"changed": changed, "mode": mode, "primary": primary, "epoch": int(epoch), "rewound": rewound}


class Refusal(Exception):
    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc


class FakeBackend(ClusterBackend):
    """The API primitives over the store, with the API server's errors, and the simulated exec."""

    def __init__(self, cluster: FakeCluster) -> None:
        super().__init__(NAMESPACE)
        self.cluster = cluster
        self.store = cluster.store

    def _call(self, what: str, func: Callable[..., Any], *args: Any) -> Any:
        try:
            result = func(*args)
        except LocalApiError as exc:
            if exc.status == 404:
                raise NotFound(f"{what} not found", status=404) from None
            if exc.status == 409:
                raise Conflict(f"{what} changed concurrently (409 Conflict): {exc.message}", status=409) from None
            raise ClusterError(f"{what}: {exc}", status=exc.status) from None
        if result is None and func == self.store.get:
            raise NotFound(f"{what} not found", status=404)
        return result

    def check_namespace(self) -> None:
        if NAMESPACE not in self.store.namespaces():
            raise NotFound(f"namespace {NAMESPACE} not found")

    def get_statefulset(self, name: str) -> dict:
        return self._call(f"StatefulSet {NAMESPACE}/{name}", self.store.get, "StatefulSet", NAMESPACE, name)

    def list_pods(self, label_selector: dict[str, str] | None) -> list[dict]:
        return self._call(f"pods in namespace {NAMESPACE}", self.store.list, "Pod", NAMESPACE, label_selector)

    def get_configmap(self, name: str) -> dict:
        return self._call(f"ConfigMap {NAMESPACE}/{name}", self.store.get, "ConfigMap", NAMESPACE, name)

    def replace_configmap(self, configmap: dict) -> dict:
        obj = {"apiVersion": "v1", "kind": "ConfigMap", **configmap, "metadata": {**configmap["metadata"], "namespace": NAMESPACE}}
        return self._call(f"ConfigMap {NAMESPACE}/{obj['metadata']['name']}", self.store.replace, obj)

    def patch_configmap(self, name: str, patch: dict) -> dict:
        return self._call(f"ConfigMap {NAMESPACE}/{name}", self.store.patch_merge, "ConfigMap", NAMESPACE, name, patch)

    def get_service(self, name: str) -> dict:
        return self._call(f"Service {NAMESPACE}/{name}", self.store.get, "Service", NAMESPACE, name)

    def patch_service(self, name: str, patch: dict) -> dict:
        return self._call(f"Service {NAMESPACE}/{name}", self.store.patch_merge, "Service", NAMESPACE, name, patch)

    def patch_pod_labels(self, pod_name: str, labels: dict[str, str | None]) -> dict:
        return self._call(f"pod {NAMESPACE}/{pod_name}", self.store.patch_merge, "Pod", NAMESPACE, pod_name, {"metadata": {"labels": labels}})

    def exec(self, pod_name: str, argv: list[str], timeout: float, stdin: StdinLine | None = None) -> ExecResult:
        return self.cluster.exec(pod_name, argv, stdin)


__all__ = ["FakeCluster", "FakeBackend", "Member", "NAMESPACE", "NAME", "lsn_to_int"]
