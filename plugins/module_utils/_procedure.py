# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What switchover and failover share: the lease, the step runner, ``ctl.sh`` and the repointing.

The lease and the record of the primary live in one object, ConfigMap ``<name>-primary``
(``data.primary``, ``data.epoch``; the lease in ``dbonk8s.io/lease-*`` annotations). Every write
is a ``replace`` with the ``resourceVersion`` that was read, so of two runs that read the same
version only one can write; the loser re-reads and sees the winner's lease. Keeping both in one
object also makes "change the primary" and "record that this run did it" a single atomic write.

The lease carries the operation's progress (operation, previous primary, candidate, epoch before
the operation, step), so a run that finds an expired lease knows what was interrupted and can
finish or undo it (``_switchover.converge``). Its expiry is renewed before every step with that
step's own time budget added, so a slow step never loses the lease, and a killed run's lease
expires at most ``lease_seconds`` after its last step's deadline; every command a step starts in a
pod has its own timeout below that deadline, so nothing the dead run started is still running when
another run takes over.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ClusterBackend,
    ClusterError,
    Conflict,
    ExecLost,
    ExecTimeout,
    NotFound,
    PodUnavailable,
    StdinLine,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import lsn_to_int, parse_sync_standby_names

CTL_PATH = "/etc/postgresql/scripts/ctl.sh"
ANNOTATION_PREFIX = "dbonk8s.io/lease-"
LEASE_FIELDS = ("holder", "operation", "expires", "acquired", "step", "previous", "candidate", "epoch")
ROLE_LABEL = "dbonk8s.io/role"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# Tries of a read-modify-replace that lost a race against a write that did not take our lease
# (for instance the role labelling the record, or a second module run being refused).
_REPLACE_ATTEMPTS = 5


class ProcedureError(ClusterError):
    """A step could not be done; ``str()`` is a sentence for the user."""


class LeaseHeld(ProcedureError):
    """Another run holds the lease."""

    def __init__(self, lease: "LeaseInfo") -> None:
        expires = lease.expires.strftime("%Y-%m-%dT%H:%M:%SZ") if lease.expires else "never"
        super().__init__(
            f"another operation holds the lease: {lease.operation or 'unknown operation'} by {lease.holder}"
            f" (step {lease.step or 'unknown'}, {lease.previous or '?'} -> {lease.candidate or '?'}, expires {expires});"
            " run again after it expires to finish or undo it"
        )
        self.lease = lease


class CtlRefused(ProcedureError):
    """``ctl.sh`` exited non-zero: it refused, and said why on stderr."""

    def __init__(self, pod: str, verb: str, rc: int, reason: str) -> None:
        super().__init__(f"ctl.sh {verb} in {pod} refused (exit {rc}): {reason}")
        self.pod = pod
        self.verb = verb
        self.rc = rc
        self.reason = reason


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def new_run_id(operation: str) -> str:
    """Unique and readable: who ran it (host, pid) and a random part."""
    return f"{operation}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def lsn(value: str | None) -> int | None:
    return lsn_to_int(value) if value else None


# -- the record of the primary and the lease ---------------------------------------------------------


@dataclasses.dataclass
class LeaseInfo:
    holder: str | None = None
    operation: str | None = None
    expires: datetime.datetime | None = None
    acquired: datetime.datetime | None = None
    step: str | None = None
    previous: str | None = None
    candidate: str | None = None
    epoch: int | None = None

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> "LeaseInfo | None":
        holder = annotations.get(ANNOTATION_PREFIX + "holder")
        if not holder:
            return None
        epoch = annotations.get(ANNOTATION_PREFIX + "epoch")
        return cls(
            holder=holder,
            operation=annotations.get(ANNOTATION_PREFIX + "operation"),
            expires=parse_time(annotations.get(ANNOTATION_PREFIX + "expires")),
            acquired=parse_time(annotations.get(ANNOTATION_PREFIX + "acquired")),
            step=annotations.get(ANNOTATION_PREFIX + "step"),
            previous=annotations.get(ANNOTATION_PREFIX + "previous"),
            candidate=annotations.get(ANNOTATION_PREFIX + "candidate"),
            epoch=int(epoch) if epoch and epoch.isdigit() else None,
        )

    def to_annotations(self) -> dict[str, str | None]:
        values: dict[str, Any] = dataclasses.asdict(self)
        out: dict[str, str | None] = {}
        for field in LEASE_FIELDS:
            value = values[field]
            if isinstance(value, datetime.datetime):
                value = format_time(value)
            out[ANNOTATION_PREFIX + field] = None if value is None else str(value)
        return out

    def expired(self, now: datetime.datetime) -> bool:
        # A lease without a readable expiry was written by hand or damaged: treat it as expired
        # rather than blocking every operation forever.
        return self.expires is None or self.expires <= now

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = dataclasses.asdict(self)
        for key in ("expires", "acquired"):
            if out[key] is not None:
                out[key] = format_time(out[key])
        return out


@dataclasses.dataclass
class Record:
    primary: str | None
    epoch: int
    lease: LeaseInfo | None
    configmap: dict

    @property
    def resource_version(self) -> str | None:
        return (self.configmap.get("metadata") or {}).get("resourceVersion")


class RecordStore:
    """Reads and conditionally writes ConfigMap ``<name>-primary``."""

    def __init__(self, backend: ClusterBackend, cluster_name: str) -> None:
        self.backend = backend
        self.name = f"{cluster_name}-primary"

    def read(self) -> Record:
        try:
            configmap = self.backend.get_configmap(self.name)
        except NotFound:
            raise ProcedureError(
                f"ConfigMap {self.backend.namespace}/{self.name} (the record of the primary) not found: "
                "deploy the cluster with the dbonk8s.postgresql.pg_cluster role first"
            ) from None
        data = configmap.get("data") or {}
        epoch_text = str(data.get("epoch") or "")
        if not epoch_text.isdigit():
            raise ProcedureError(f"ConfigMap {self.backend.namespace}/{self.name} has no valid epoch (data.epoch={data.get('epoch')!r})")
        annotations = (configmap.get("metadata") or {}).get("annotations") or {}
        return Record(primary=data.get("primary") or None, epoch=int(epoch_text), lease=LeaseInfo.from_annotations(annotations), configmap=configmap)

    def replace(self, record: Record, primary: str | None = None, epoch: int | None = None, lease: LeaseInfo | None | bool = False) -> Record:
        """Write ``record`` changed as asked; ``Conflict`` when it changed since it was read.

        ``lease=None`` removes the lease annotations, ``lease=False`` keeps them as read.
        """
        configmap = json.loads(json.dumps(record.configmap))
        data = configmap.setdefault("data", {})
        if primary is not None:
            data["primary"] = primary
        if epoch is not None:
            data["epoch"] = str(epoch)
        metadata = configmap.setdefault("metadata", {})
        annotations = dict(metadata.get("annotations") or {})
        if lease is not False:
            fields = lease.to_annotations() if isinstance(lease, LeaseInfo) else {ANNOTATION_PREFIX + field: None for field in LEASE_FIELDS}
            for key, value in fields.items():
                if value is None:
                    annotations.pop(key, None)
                else:
                    annotations[key] = value
        metadata["annotations"] = annotations
        written = self.backend.replace_configmap(configmap)
        annotations = (written.get("metadata") or {}).get("annotations") or {}
        written_data = written.get("data") or {}
        return Record(
            primary=written_data.get("primary") or None,
            epoch=int(written_data.get("epoch") or 0),
            lease=LeaseInfo.from_annotations(annotations),
            configmap=written,
        )


class Lease:
    """This run's hold on the cluster (see the module docstring)."""

    def __init__(
        self,
        store: RecordStore,
        holder: str,
        operation: str,
        seconds: float,
        now: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.holder = holder
        self.operation = operation
        self.seconds = seconds
        self.now = now
        self.info: LeaseInfo | None = None
        self.record: Record | None = None
        #: The expired lease this run took over (its progress tells what was interrupted).
        self.taken_over: LeaseInfo | None = None

    def _expiry(self, budget: float) -> datetime.datetime:
        return self.now() + datetime.timedelta(seconds=self.seconds + max(0.0, budget))

    def acquire(self, previous: str | None, candidate: str | None, epoch: int, step: str, budget: float = 0.0) -> Record:
        """Take the lease, or raise ``LeaseHeld`` naming the live holder."""
        for _attempt in range(_REPLACE_ATTEMPTS):
            record = self.store.read()
            current = record.lease
            if current is not None and current.holder != self.holder and not current.expired(self.now()):
                raise LeaseHeld(current)
            info = LeaseInfo(
                holder=self.holder,
                operation=self.operation,
                expires=self._expiry(budget),
                acquired=self.now(),
                step=step,
                previous=previous,
                candidate=candidate,
                epoch=epoch,
            )
            try:
                self.record = self.store.replace(record, lease=info)
            except Conflict:
                continue
            if current is not None and current.holder != self.holder:
                self.taken_over = current
            self.info = info
            return self.record
        raise ProcedureError(f"could not take the lease on ConfigMap {self.store.name}: it kept changing under us")

    def update(self, step: str | None = None, budget: float = 0.0, primary: str | None = None, epoch: int | None = None, **progress: Any) -> Record:
        """Renew the lease (and record the step); optionally change the record in the same write."""
        if self.info is None:
            raise ProcedureError("the lease is not held")
        for attempt in range(_REPLACE_ATTEMPTS):
            # First from what this lease last wrote: its resourceVersion makes the write fail with a
            # conflict if anyone wrote since, and only then is the record read (one API call fewer
            # inside the write pause).
            record = self.record if attempt == 0 and self.record is not None else self.store.read()
            if record.lease is None or record.lease.holder != self.holder:
                other = record.lease.holder if record.lease else "nobody"
                raise ProcedureError(f"lost the lease on ConfigMap {self.store.name} (now held by {other}); stopping here")
            info = dataclasses.replace(self.info, expires=self._expiry(budget), **progress)
            if step is not None:
                info.step = step
            try:
                self.record = self.store.replace(record, primary=primary, epoch=epoch, lease=info)
            except Conflict:
                continue
            self.info = info
            return self.record
        raise ProcedureError(f"could not renew the lease on ConfigMap {self.store.name}: it kept changing under us")

    def abandon(self) -> None:
        """Expire the lease now but keep its progress: for a run that fails half-way."""
        if self.info is None:
            return
        for _attempt in range(_REPLACE_ATTEMPTS):
            record = self.store.read()
            if record.lease is None or record.lease.holder != self.holder:
                break
            info = dataclasses.replace(record.lease, expires=self.now())
            try:
                self.record = self.store.replace(record, lease=info)
            except Conflict:
                continue
            break
        self.info = None

    def release(self) -> None:
        if self.info is None:
            return
        for _attempt in range(_REPLACE_ATTEMPTS):
            record = self.store.read()
            if record.lease is None or record.lease.holder != self.holder:
                break
            try:
                self.record = self.store.replace(record, lease=None)
            except Conflict:
                continue
            break
        self.info = None


# -- steps ----------------------------------------------------------------------------------------


class Steps:
    """Runs named steps, renewing the lease before each, and records what each took."""

    def __init__(self, lease: Lease | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease = lease
        self.clock = clock
        self.done: list[dict[str, Any]] = []
        self.marks: dict[str, float] = {}

    def run(self, name: str, func: Callable[[], Any], budget: float = 0.0, renew: bool = True) -> Any:
        """``renew=False``: the step renews the lease itself (its one write to the ConfigMap is a
        lease update), so that a step inside the write pause costs one API write, not two."""
        if renew and self.lease is not None and self.lease.info is not None:
            self.lease.update(step=name, budget=budget)
        started = self.clock()
        self.marks.setdefault(name + ":start", started)
        try:
            result = func()
        except Exception as exc:
            self.done.append({"name": name, "duration_ms": self._ms(started), "status": "failed", "error": str(exc)})
            raise
        self.marks[name + ":end"] = self.clock()
        self.done.append({"name": name, "duration_ms": self._ms(started), "status": "ok"})
        return result

    def parallel(self, steps: list[tuple[str, Callable[[], Any]]], budget: float = 0.0) -> list[Any]:
        """Run independent steps at once; each is recorded with its own duration, in the given
        order. The first failure is raised once all have ended."""
        import concurrent.futures

        if self.lease is not None and self.lease.info is not None:
            self.lease.update(step="+".join(step[0] for step in steps), budget=budget)
        started = self.clock()
        for name, _unused in steps:
            self.marks.setdefault(name + ":start", started)

        def one(name: str, func: Callable[[], Any]) -> tuple[Any, Exception | None, float]:
            try:
                return func(), None, self.clock()
            except Exception as exc:  # reported below, in order, after every step ended
                return None, exc, self.clock()

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(steps)) as pool:
            outcomes = list(pool.map(lambda step: one(*step), steps))
        results = []
        failure: Exception | None = None
        for (name, _unused), (value, error, ended) in zip(steps, outcomes):
            entry: dict[str, Any] = {"name": name, "duration_ms": int(round((ended - started) * 1000)), "status": "ok" if error is None else "failed"}
            if error is not None:
                entry["error"] = str(error)
                failure = failure or error
            else:
                self.marks[name + ":end"] = ended
            self.done.append(entry)
            results.append(value)
        if failure is not None:
            raise failure
        return results

    def _ms(self, started: float) -> int:
        return int(round((self.clock() - started) * 1000))

    def between_ms(self, start_mark: str, end_mark: str) -> int | None:
        if start_mark not in self.marks or end_mark not in self.marks:
            return None
        return int(round((self.marks[end_mark] - self.marks[start_mark]) * 1000))


# -- ctl.sh in the pods ------------------------------------------------------------------------------


class Ctl:
    """Runs ``ctl.sh`` verbs in member pods; every verb prints one JSON object."""

    def __init__(self, backend: ClusterBackend, exec_timeout: float) -> None:
        self.backend = backend
        self.exec_timeout = exec_timeout

    def __call__(self, pod: str, verb: str, *args: Any, timeout: float | None = None, stdin: StdinLine | None = None) -> dict[str, Any]:
        argv = [CTL_PATH, verb] + [str(arg) for arg in args]
        result = self.backend.exec(pod, argv, timeout if timeout is not None else self.exec_timeout, stdin=stdin)
        if result.rc != 0:
            reason = " ".join(line.strip() for line in result.stderr.strip().splitlines()[-3:]) or f"no reason given (stdout: {result.stdout.strip()[:200]})"
            raise CtlRefused(pod, verb, result.rc, reason)
        for line in reversed(result.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    break
        raise ProcedureError(f"ctl.sh {verb} in {pod} printed no JSON object: {result.stdout.strip()[:200]!r}")

    def state(self, pod: str) -> dict[str, Any] | None:
        """``ctl.sh state``, or None when the container cannot be reached."""
        return self.ask(pod)[0]

    def ask(self, pod: str, timeout: float | None = None) -> tuple[dict[str, Any] | None, str]:
        """``ctl.sh state`` and, when there is none, why in a few words (for the user)."""
        limit = timeout if timeout is not None else self.exec_timeout
        try:
            return self(pod, "state", timeout=limit), ""
        except PodUnavailable:
            return None, "its container is not running"
        except NotFound:
            return None, "it has no pod"
        except ExecTimeout:
            return None, f"no answer within {limit:g}s (frozen, cut off or overloaded)"
        except ExecLost:
            return None, "the exec connection was lost"
        except CtlRefused as exc:
            return None, f"ctl.sh state failed ({exc.reason})"


class Background:
    """A command run in the background (a daemon thread, so that it never holds the module's exit)."""

    def __init__(self, func: Callable[[], Any]) -> None:
        self._value: Any = None
        self._done = threading.Event()

        def run() -> None:
            try:
                self._value = func()
            except BaseException as exc:  # handed to the caller by result(), whatever it is
                self._value = exc
            self._done.set()

        threading.Thread(target=run, daemon=True).start()

    def result(self, timeout: float) -> Any:
        """The command's result, its exception, or None when it has not ended within ``timeout``."""
        return self._value if self._done.wait(timeout) else None


class Armed:
    """A ctl.sh verb started now that changes nothing until told: ``go()`` lets it act, ``cancel()``
    ends it with nothing changed (so does the module's exit: its stdin closes)."""

    def __init__(self, ctl: Ctl, pod: str, verb: str, args: list[Any], told_within: int, timeout: float) -> None:
        self.pod = pod
        self.verb = verb
        # One line per command: an exec that ends closes its own line.
        self._line = StdinLine()
        self._background = Background(
            lambda: ctl(pod, verb, *args, told_within, timeout=told_within + timeout + ctl.exec_timeout, stdin=self._line)
        )

    def go(self) -> None:
        self._line.say("go")

    def cancel(self) -> None:
        self._line.close()

    @staticmethod
    def cancel_all(commands: list["Armed"]) -> None:
        for command in commands:
            command.cancel()

    def result(self, timeout: float) -> Any:
        return self._background.result(timeout)

    def outcome(self, timeout: float, again: Callable[[], dict[str, Any]], notes: list[str]) -> dict[str, Any]:
        """The answer once told to go; when the armed command ended without acting (the member was
        not ready when it was armed, the exec was lost) or does not answer, ``again()`` runs the
        verb anew: every ctl.sh verb is idempotent."""
        answer = self.result(timeout)
        if isinstance(answer, dict):
            return answer
        notes.append(f"the armed ctl.sh {self.verb} in {self.pod} did not answer ({answer or 'no answer'}); ran it again")
        return again()


# -- the cluster's view of its primary: Service and labels --------------------------------------------


def point_service(backend: ClusterBackend, cluster_name: str, primary: str) -> bool:
    """Select ``primary`` in Service ``<name>-rw``; False when it already did."""
    name = f"{cluster_name}-rw"
    try:
        service = backend.get_service(name)
    except NotFound:
        raise ProcedureError(f"Service {backend.namespace}/{name} not found: it is part of every cluster deployed by pg_cluster") from None
    selector = (service.get("spec") or {}).get("selector") or {}
    if selector.get(POD_NAME_LABEL) == primary:
        return False
    backend.patch_service(name, {"spec": {"selector": {POD_NAME_LABEL: primary}}})
    return True


def label_roles(backend: ClusterBackend, pods: list[dict], primary: str) -> list[str]:
    """``dbonk8s.io/role``: primary on ``primary``, replica on the others; returns the pods changed.

    Replicas are labelled before the primary, so that at no moment two pods carry ``primary``.
    """
    changed = []
    ordered = sorted(pods, key=lambda pod: pod["metadata"]["name"] == primary)
    for pod in ordered:
        name = pod["metadata"]["name"]
        want = "primary" if name == primary else "replica"
        if ((pod["metadata"].get("labels") or {}).get(ROLE_LABEL)) == want:
            continue
        try:
            backend.patch_pod_labels(name, {ROLE_LABEL: want})
        except NotFound:
            continue  # deleted meanwhile: its replacement is labelled by the next run or the role
        changed.append(name)
    return changed


def required_sync_count(synchronous_standby_names: str | None) -> int:
    """How many synchronous standbys a commit waits for, from ``synchronous_standby_names``
    (0 for an empty or unreadable setting)."""
    try:
        return parse_sync_standby_names(synchronous_standby_names)[1]
    except (TypeError, ValueError):
        return 0


def follow(ctl: Ctl, pod: str, primary: str, epoch: int, timeout: float) -> dict[str, Any]:
    return ctl(pod, "follow", primary, epoch, timeout=timeout)


# -- one run of an operation ------------------------------------------------------------------------


@dataclasses.dataclass
class Timeouts:
    """Seconds allowed for each kind of wait; every command in a pod gets one of these."""

    exec: float = 30.0
    stop: float = 60.0
    promote: float = 60.0
    replay: float = 10.0
    rejoin: float = 120.0


class Operation:
    """Shared state and helpers of one switchover or failover run on one cluster."""

    operation = "operation"

    def __init__(
        self,
        backend: ClusterBackend,
        members: Any,
        timeouts: Timeouts,
        lease_seconds: float,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime.datetime] = utcnow,
        poll_interval: float = 0.05,
    ) -> None:
        self.backend = backend
        self.members = members
        self.timeouts = timeouts
        self.lease_seconds = lease_seconds
        self.holder = holder or new_run_id(self.operation)
        self.clock = clock
        self.sleep = sleep
        self.now = now
        self.poll_interval = poll_interval
        self.ctl = Ctl(backend, timeouts.exec)
        self.cluster_name: str | None = None
        self.store: RecordStore | None = None
        self.lease: Lease | None = None
        self.steps = Steps(clock=clock)
        #: Sentences about what the run found or did besides its steps (for the result).
        self.notes: list[str] = []

    # -- observing --------------------------------------------------------------------------

    def observe(self) -> dict[str, Any]:
        """``pg_replication_info``'s view of the cluster (every member probed in parallel)."""
        from ansible_collections.dbonk8s.postgresql.plugins.module_utils._replication import collect

        state = collect(self.backend, self.members, self.timeouts.exec)
        self.bind(state["cluster"]["name"])
        return state

    def plan(self, steps: list[tuple[str, str]]) -> list[dict[str, str]]:
        """The steps of this operation, with the cluster's own object names in place of ``<name>``."""
        name = self.cluster_name or "<name>"
        return [{"step": step, "description": text.replace("<name>", name)} for step, text in steps]

    def bind(self, cluster_name: str) -> None:
        """The cluster this run operates, once known (its record is ConfigMap ``<name>-primary``)."""
        if self.cluster_name is None:
            self.cluster_name = cluster_name
            self.store = RecordStore(self.backend, cluster_name)

    def record(self) -> Record:
        if self.store is None:
            self.observe()
        return self._store().read()

    def member_names(self) -> list[str]:
        return [pod["metadata"]["name"] for pod in self.backend.member_pods(self.members)]

    def states(self, names: list[str]) -> dict[str, dict[str, Any] | None]:
        """``ctl.sh state`` of several members at once; None for a member that cannot be reached."""
        import concurrent.futures

        if len(names) <= 1:
            return {name: self.ctl.state(name) for name in names}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(names), 8)) as pool:
            return dict(zip(names, pool.map(self.ctl.state, names)))

    def poll(self, what: str, timeout: float, check: Callable[[], Any]) -> Any:
        """Call ``check`` until it returns something truthy; ``ProcedureError`` after ``timeout``."""
        deadline = self.clock() + timeout
        while True:
            value = check()
            if value:
                return value
            if self.clock() >= deadline:
                raise ProcedureError(f"timed out after {timeout:g}s waiting for {what}")
            self.sleep(self.poll_interval)

    def _store(self) -> RecordStore:
        if self.store is None:
            self.observe()
        if self.store is None:
            raise ProcedureError("the cluster's name could not be determined")
        return self.store

    # -- the lease --------------------------------------------------------------------------

    def take_lease(self, previous: str | None, candidate: str | None, epoch: int, step: str = "lease") -> Record:
        if self.store is None:
            self.observe()
        self.lease = Lease(self._store(), self.holder, self.operation, self.lease_seconds, now=self.now)
        self.steps.lease = self.lease
        return self.lease.acquire(previous, candidate, epoch, step)

    def release_lease(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def finish_interrupted(self, lease: LeaseInfo, record: Record, check_mode: bool) -> list[str]:
        """Takes over the expired lease of an interrupted run and makes every reachable member
        follow the record (see ``converge``); returns what was done. In check mode only a note."""
        what = f"an interrupted {lease.operation} ({lease.previous} -> {lease.candidate}, step {lease.step})"
        if check_mode:
            self.notes.append(f"{what} would be finished first: the record names {record.primary}")
            return []
        self.take_lease(lease.previous, lease.candidate, record.epoch, step="converge")
        budget = self.timeouts.stop + self.timeouts.promote + self.timeouts.rejoin
        actions = self.steps.run("converge", lambda: self.converge(self.record()), budget=budget)
        self.notes.append(f"finished {what}")
        return actions

    # -- actions shared by switchover and failover ------------------------------------------

    def wait_primary(self, pod: str, timeout: float) -> dict[str, Any]:
        """Until ``pod`` accepts connections; returns its state."""

        def ready() -> dict[str, Any] | None:
            state = self.ctl.state(pod)
            return state if state and state.get("running") and state.get("accepting") else None

        return self.poll(f"{pod} to accept connections", timeout, ready)

    def promote(self, pod: str, epoch: int) -> dict[str, Any]:
        # ctl.sh writes the epoch before it asks PostgreSQL to promote, so a member that promoted
        # never restarts as a standby of a stale record (start-up rule 2).
        return self.ctl(pod, "promote", epoch, int(self.timeouts.promote), timeout=self.timeouts.promote + self.timeouts.exec)

    def arm(self, pod: str, verb: str, args: list[Any], told_within: int, timeout: float) -> Armed:
        """``ctl.sh VERB ARGS TOLD_WITHIN`` started now, acting once told to go (see ``Armed``)."""
        return Armed(self.ctl, pod, verb, args, told_within, timeout)

    def route(self, primary: str) -> list[str]:
        """Service ``<name>-rw`` and the role labels to ``primary``; returns what changed."""
        self._store()
        changed: list[str] = []
        if point_service(self.backend, self.cluster_name, primary):
            changed.append(f"Service {self.cluster_name}-rw")
        changed += [f"label of {name}" for name in label_roles(self.backend, self.backend.member_pods(self.members), primary)]
        return changed

    def repoint(self, standbys: list[str], primary: str, epoch: int, wait: float = 0.0) -> dict[str, Any]:
        """``ctl.sh follow`` on running standbys, in parallel; a member that cannot be reached is
        noted, not fatal: it follows the record when it starts. With ``wait``, each waits in its
        pod until ``primary`` is out of recovery (so that this can run during the promotion)."""
        import concurrent.futures

        def one(name: str) -> Any:
            try:
                if wait:
                    return self.ctl(name, "follow", primary, epoch, int(wait), timeout=wait + self.timeouts.exec)
                return follow(self.ctl, name, primary, epoch, self.timeouts.exec)
            except ClusterError as exc:
                return exc

        if not standbys:
            return {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(standbys), 8)) as pool:
            outcomes = dict(zip(standbys, pool.map(one, standbys)))
        results = {}
        for name, outcome in outcomes.items():
            if isinstance(outcome, CtlRefused) and outcome.rc == 3:
                # 3: the member is stopped and not held (restarting): start-up rule 3 points it
                # at the record's primary when it starts.
                self.notes.append(f"{name} is not running; it follows {primary} when it starts")
                results[name] = {"changed": False, "skipped": str(outcome)}
            elif isinstance(outcome, (PodUnavailable, ExecTimeout, ExecLost)):
                self.notes.append(f"{name} could not be repointed ({outcome}); it follows {primary} when it starts")
                results[name] = {"changed": False, "skipped": str(outcome)}
            elif isinstance(outcome, Exception):
                raise outcome
            else:
                results[name] = outcome
        return results

    def rejoin(self, pod: str, primary: str, epoch: int) -> dict[str, Any]:
        """A stopped, held member becomes a standby of ``primary`` (pg_rewind when needed), then
        the supervisor starts it."""
        result = self.ctl(pod, "follow", primary, epoch, timeout=self.timeouts.rejoin)
        self.ctl(pod, "release")
        return result

    def sync_status(self, primary: str, required_members: list[str]) -> tuple[bool, str, dict[str, Any]]:
        """Whether ``primary`` alone is primary, has its synchronous standbys, and each of
        ``required_members`` streams from it."""
        state = self.observe()
        cluster = state["cluster"]
        if cluster["primaries"] != [primary]:
            return False, "primaries: " + (", ".join(cluster["primaries"]) or "none"), state
        primary_member = next(member for member in state["members"] if member["name"] == primary)
        wanted = min(required_sync_count(primary_member.get("synchronous_standby_names")), len(state["members"]) - 1)
        if cluster["sync_standbys"] < wanted:
            return False, f"{cluster['sync_standbys']} of {wanted} synchronous standbys", state
        for name in required_members:
            member = next((member for member in state["members"] if member["name"] == name), None)
            if member is None or member["replication_state"] != "streaming":
                return False, f"{name} not streaming from {primary}", state
        return True, "", state

    def wait_sync(self, primary: str, required_members: list[str], timeout: float) -> dict[str, Any]:
        last = {"why": ""}

        def met() -> dict[str, Any] | None:
            ok, why, state = self.sync_status(primary, required_members)
            last["why"] = why
            return state if ok else None

        try:
            return self.poll(f"the synchronous standbys of {primary}", timeout, met)
        except ProcedureError as exc:
            raise ProcedureError(f"{exc} ({last['why']})") from None

    def converge(self, record: Record) -> list[str]:
        """Make every reachable member follow the record; returns what was done.

        The record only ever names a member that holds every acknowledged commit (switchover writes
        it after verifying the candidate, failover after choosing the most advanced standby), so
        finishing an interrupted operation means making the recorded primary primary.
        """
        primary, epoch = record.primary, record.epoch
        names = self.member_names()
        if primary not in names:
            raise ProcedureError(f"the record names {primary!r} as primary, which is not a member ({', '.join(names)})")
        states = self.states(names)
        actions: list[str] = []
        others_primary = [name for name, state in states.items() if name != primary and state and state.get("running") and state.get("in_recovery") is False]
        if others_primary:
            raise ProcedureError(
                f"{', '.join(others_primary)} runs as primary although the record names {primary} (epoch {epoch}); "
                "refusing to guess which one holds the acknowledged commits"
            )
        current = states[primary]
        if current is None:
            raise ProcedureError(f"the recorded primary {primary} cannot be reached; if it is lost, use pg_failover")
        if not current.get("running"):
            if current.get("hold"):
                self.ctl(primary, "release")
                actions.append(f"released {primary} (it was held stopped)")
            current = self.wait_primary(primary, self.timeouts.stop + self.timeouts.promote)
        if current.get("in_recovery"):
            self.promote(primary, epoch)
            actions.append(f"promoted {primary} (epoch {epoch})")
        for name in names:
            state = states[name]
            if name == primary or state is None:
                continue
            if state.get("running"):
                if follow(self.ctl, name, primary, epoch, self.timeouts.exec).get("changed"):
                    actions.append(f"repointed {name} to {primary}")
            elif state.get("hold"):
                self.rejoin(name, primary, epoch)
                actions.append(f"rejoined {name} as a standby of {primary}")
        actions += [f"updated {what}" for what in self.route(primary)]
        return actions
