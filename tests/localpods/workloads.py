"""Controllers of the local pod runtime's other workloads: Deployments, ReplicaSets, Jobs, CronJobs.

Like the StatefulSet controller (runtime.py) each one runs for one object of the store, from its
creation to its deletion, and reacts to the store only: a Deployment writes ReplicaSets, a
ReplicaSet makes pods, a CronJob writes Jobs, a Job makes pods, and each writes its object's status
in the shapes the API gives. The decisions that need no process (template hashes, rollout steps,
Job outcomes, cron schedules) are pure functions beside them, tested on their own.

What differs from Kubernetes: names' random suffixes come from Python's generator, minReadySeconds
and progressDeadlineSeconds are not honoured, a Job's pod back-off follows the runtime's back-off
options rather than kubelet's 10 s doubling to 6 minutes, and the Job's pod failure policy,
indexed completions and suspend are not implemented.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import random
import threading
import time
import zoneinfo
from typing import TYPE_CHECKING

from tests.localpods._api import LocalApiError
from tests.localpods.kubelet import Pod, PodIdentity, now

if TYPE_CHECKING:
    from tests.localpods.runtime import Runtime

CONTROLLER_PERIOD = 0.05
# The alphabet of the API machinery's generated names and hashes (no vowels, no look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _index in range(length):
        number, rest = divmod(number, len(SAFE_ALPHABET))
        chars.append(SAFE_ALPHABET[rest])
    return "".join(chars)


def template_hash(template: dict) -> str:
    """The ``pod-template-hash`` of a pod template: the same template, the same hash."""
    return safe_encode(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest(), 10)


def random_suffix() -> str:
    return "".join(random.choice(SAFE_ALPHABET) for _index in range(5))  # nosec B311 - names, not secrets


def resolve_count(value: object, total: int, round_up: bool) -> int:
    """An IntOrString of a rollout (``maxSurge``, ``maxUnavailable``): a count, or a percentage of
    ``total`` rounded as the Deployment controller rounds it."""
    if isinstance(value, str) and value.endswith("%"):
        share = total * int(value[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)  # type: ignore[arg-type]


def rollout_step(replicas: int, strategy: dict, new: dict[str, int], old: list[dict[str, int]]) -> tuple[int, list[int]]:
    """The replica counts a Deployment sets next: (new ReplicaSet's, each old one's, oldest first).

    ``new`` and each ``old`` are {"replicas": spec.replicas, "available": status.availableReplicas,
    "existing": status.replicas}. RollingUpdate surges the new ReplicaSet by ``maxSurge`` above
    ``replicas`` and scales the old ones down while at least ``replicas - maxUnavailable`` pods stay
    available; Recreate scales the old ones to zero and starts the new one once their pods are gone."""
    kind = strategy.get("type") or "RollingUpdate"
    if kind == "Recreate":
        if any(rs["replicas"] or rs["existing"] for rs in old):
            return new["replicas"] if not any(rs["replicas"] for rs in old) else 0, [0 for _rs in old]
        return replicas, [0 for _rs in old]
    rolling = strategy.get("rollingUpdate") or {}
    surge = resolve_count(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = resolve_count(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    total = new["replicas"] + sum(rs["replicas"] for rs in old)
    new_replicas = new["replicas"]
    if new_replicas > replicas:
        new_replicas = replicas
    elif new_replicas < replicas:
        new_replicas += max(0, min(replicas + surge - total, replicas - new_replicas))
    room = new["available"] + sum(rs["available"] for rs in old) - (replicas - unavailable)
    # Pods of old ReplicaSets that are not available count for nothing: they go first, freely.
    old_replicas = []
    for rs in old:
        unhealthy = max(0, rs["replicas"] - rs["available"])
        keep = rs["replicas"] - unhealthy
        cut = min(max(room, 0), keep)
        room -= cut
        old_replicas.append(keep - cut)
    return new_replicas, old_replicas


def statefulset_revision_of_new_pod(ordinal: int, strategy: dict, current: str, update: str) -> str:
    """The revision a StatefulSet makes pod ``ordinal`` at: RollingUpdate keeps the ordinals below
    its ``partition`` at the current revision; every other pod (and any under OnDelete) gets the
    update revision."""
    if (strategy.get("type") or "RollingUpdate") == "RollingUpdate":
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        if ordinal < partition:
            return current
    return update


def statefulset_pod_to_update(members: dict[int, tuple[str, bool]], replicas: int, strategy: dict, update: str) -> int | None:
    """The member a RollingUpdate deletes next so that it comes back at the update revision: once
    every ordinal below ``replicas`` has a ready pod, the highest one at or above the partition that
    runs another revision; None while a member is missing or not ready, when all are updated, and
    always under OnDelete (the user deletes pods). ``members``: ordinal -> (revision, ready)."""
    if (strategy.get("type") or "RollingUpdate") != "RollingUpdate":
        return None
    if any(ordinal not in members or not members[ordinal][1] for ordinal in range(replicas)):
        return None
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    for ordinal in range(replicas - 1, partition - 1, -1):
        if members[ordinal][0] != update:
            return ordinal
    return None


def job_outcome(spec: dict, succeeded: int, failed: int, started: float | None, at: float) -> tuple[str, str] | None:
    """(condition type, reason) that ends a Job, or None while it goes on: Complete once
    ``completions`` pods succeeded, Failed with BackoffLimitExceeded after more than ``backoffLimit``
    failures, or with DeadlineExceeded ``activeDeadlineSeconds`` after it started."""
    completions = int(spec.get("completions", 1) if spec.get("completions") is not None else 1)
    if succeeded >= completions:
        return "Complete", "Completed"
    if failed > int(spec.get("backoffLimit", 6)):
        return "Failed", "BackoffLimitExceeded"
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and started is not None and at - started >= float(deadline):
        return "Failed", "DeadlineExceeded"
    return None


# -- cron schedules -------------------------------------------------------------------------------

CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = {name: number for number, name in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
WEEKDAYS = {name: number for number, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


def _cron_value(text: str, index: int) -> int:
    names = MONTHS if index == 3 else WEEKDAYS if index == 4 else {}
    value = names.get(text.lower()) if text.isalpha() else int(text)
    if value is None:
        raise ValueError(f"{text!r} is not a {CRON_FIELDS[index][0]}")
    return 0 if index == 4 and value == 7 else value


def parse_cron(schedule: str) -> tuple[list[set[int]], bool, bool]:
    """The allowed values of the five fields of a cron schedule, and whether day of month and day of
    week were restricted (cron matches either when both are); raises ValueError with the reason."""
    text = CRON_MACROS.get(schedule.strip(), schedule.strip())
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{schedule!r}: a schedule has 5 fields, not {len(fields)}")
    allowed: list[set[int]] = []
    for index, (field_text, (name, low, high)) in enumerate(zip(fields, CRON_FIELDS)):
        values: set[int] = set()
        for part in field_text.split(","):
            body, _slash, step_text = part.partition("/")
            step = int(step_text) if step_text else 1
            if step < 1:
                raise ValueError(f"{schedule!r}: a step of {name} must be positive")
            if body in ("*", "?"):
                start, end = low, high
            elif "-" in body:
                first, last = body.split("-", 1)
                start, end = _cron_value(first, index), _cron_value(last, index)
            else:
                start = _cron_value(body, index)
                end = high if step_text else start
            if not (low <= start <= high and low <= end <= high and start <= end):
                raise ValueError(f"{schedule!r}: {part!r} is out of the range {low}-{high} of {name}")
            values.update(range(start, end + 1, step))
        allowed.append(values)
    return allowed, fields[2] not in ("*", "?"), fields[4] not in ("*", "?")


def cron_times(schedule: str, time_zone: str | None, after: datetime.datetime, until: datetime.datetime) -> list[datetime.datetime]:
    """The times of ``schedule`` in ``time_zone`` (UTC without one) after ``after`` up to ``until``."""
    (minutes, hours, days, months, weekdays), days_set, weekdays_set = parse_cron(schedule)
    zone = zoneinfo.ZoneInfo(time_zone) if time_zone else datetime.timezone.utc
    moment = after.astimezone(zone).replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    found = []
    while moment <= until and len(found) < 1000:
        day_ok = moment.day in days
        weekday_ok = (moment.isoweekday() % 7) in weekdays
        if days_set and weekdays_set:
            date_ok = day_ok or weekday_ok
        else:
            date_ok = day_ok and weekday_ok
        if moment.minute in minutes and moment.hour in hours and moment.month in months and date_ok:
            found.append(moment)
        moment += datetime.timedelta(minutes=1)
    return found


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


# -- the controllers ----------------------------------------------------------------------------


class WorkloadController:
    """The common part: the object's life in the store, and the pods it owns by name."""

    kind = ""
    api_version = ""

    def __init__(self, runtime: Runtime, obj: dict) -> None:
        metadata = obj["metadata"]
        self.runtime = runtime
        self.namespace: str = metadata["namespace"]
        self.name: str = metadata["name"]
        self.uid: str = metadata.get("uid", "")
        self.obj = obj
        self.pods: dict[str, Pod] = {}
        self.lock = threading.RLock()
        self.thread = threading.Thread(target=self.run, name=f"{self.kind.lower()}-{self.namespace}-{self.name}", daemon=True)

    # -- what the runtime asks of every controller --------------------------------------------

    def live_pods(self) -> list[Pod]:
        with self.lock:
            return [pod for pod in self.pods.values() if not pod.finished.is_set()]

    def pod_named(self, name: str) -> Pod | None:
        with self.lock:
            return self.pods.get(name)

    def all_pods(self) -> list[Pod]:
        with self.lock:
            return list(self.pods.values())

    # -- its loop -------------------------------------------------------------------------------

    def run(self) -> None:
        runtime = self.runtime
        while not runtime.shutdown.wait(CONTROLLER_PERIOD):
            try:
                obj = runtime.store.get(self.kind, self.namespace, self.name)
                if obj is None or obj["metadata"].get("uid", "") != self.uid:
                    runtime.log(f"{self.kind.lower()} {self.namespace}/{self.name}: deleted, deleting what it owns")
                    self.deleted()
                    runtime.forget_controller(self)
                    return
                self.obj = obj
                self._stop_pods_deleted_in_the_store()
                self.reconcile(obj)
            except Exception as error:  # pylint: disable=broad-except
                runtime.log(f"{self.kind.lower()} {self.namespace}/{self.name}: {error!r}")

    def reconcile(self, obj: dict) -> None:
        raise NotImplementedError

    def owner_reference(self) -> dict:
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid, "controller": True, "blockOwnerDeletion": True}

    def owns(self, obj: dict) -> bool:
        return any(owner.get("uid") == self.uid for owner in (obj.get("metadata") or {}).get("ownerReferences") or [])

    # -- pods ----------------------------------------------------------------------------------

    def start_pod(self, template: dict, labels: dict[str, str]) -> Pod:
        with self.lock:
            name = f"{self.name}-{random_suffix()}"
            while name in self.pods:
                name = f"{self.name}-{random_suffix()}"
            spec = template.get("spec") or {}
            identity = PodIdentity(
                namespace=self.namespace,
                name=name,
                owner_reference=self.owner_reference(),
                labels=labels,
                hostname=spec.get("hostname") or "",
                subdomain=spec.get("subdomain") or "",
            )
            pod = Pod(self.runtime, identity, template)
            self.pods[name] = pod
            pod.start()
            return pod

    def delete_pod(self, name: str) -> None:
        """Graceful deletion of the pod, then of its Pod object."""
        pod = self.pod_named(name)
        if pod is None:
            return
        pod.terminate()
        with contextlib.suppress(LocalApiError):
            self.runtime.store.delete("Pod", self.namespace, name)
        with self.lock:
            if self.pods.get(name) is pod:
                del self.pods[name]

    def delete_pods_in_background(self, names: list[str]) -> None:
        for name in names:
            pod = self.pod_named(name)
            if pod is not None and not pod.terminating.is_set():
                pod.deletion_requested = True
                threading.Thread(target=self.delete_pod, args=(name,), daemon=True).start()

    def _stop_pods_deleted_in_the_store(self) -> None:
        # A Pod deleted through the API: its kubelet stops it.
        for name, pod in list(self.pods.items()):
            if not pod.terminating.is_set() and self.runtime.store.get("Pod", self.namespace, name) is None:
                threading.Thread(target=self.delete_pod, args=(name,), daemon=True).start()

    def deleted(self) -> None:
        """The garbage collector's background cascade: every pod at once, then the objects it owns."""
        names = list(self.pods)
        threads = [threading.Thread(target=self.delete_pod, args=(name,), daemon=True) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for kind in ("Pod", *self.owned_kinds()):
            for obj in self.runtime.store.list(kind, self.namespace):
                if self.owns(obj):
                    with contextlib.suppress(LocalApiError):
                        self.runtime.store.delete(kind, self.namespace, obj["metadata"]["name"])

    def owned_kinds(self) -> tuple[str, ...]:
        return ()

    def write_status(self, status: dict) -> None:
        store = self.runtime.store
        current = store.get(self.kind, self.namespace, self.name)
        if current is None or current["metadata"].get("uid", "") != self.uid:
            return
        if current.get("status") != {**(current.get("status") or {}), **status}:
            with contextlib.suppress(LocalApiError):
                store.patch_merge(self.kind, self.namespace, self.name, {"status": status})


class ReplicaSetController(WorkloadController):
    """``spec.replicas`` pods of the template, by name ``<replicaset>-<suffix>``; failed ones replaced."""

    kind = "ReplicaSet"
    api_version = "apps/v1"

    def reconcile(self, obj: dict) -> None:
        spec = obj["spec"]
        replicas = int(spec.get("replicas", 1))
        with self.lock:
            live = [pod for pod in self.pods.values() if not pod.terminating.is_set() and not pod.deletion_requested]
        failed = [pod.name for pod in live if pod.phase in ("Failed", "Succeeded")]
        if failed:
            self.delete_pods_in_background(failed)
            live = [pod for pod in live if pod.name not in failed]
        if len(live) < replicas:
            if self.runtime.shutdown.is_set():
                return
            template = spec["template"]
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            for _index in range(replicas - len(live)):
                self.start_pod(template, labels)
        elif len(live) > replicas:
            # Not-ready pods go first, then the youngest.
            doomed = sorted(live, key=lambda pod: (pod.ready, pod.started_at), reverse=False)[: len(live) - replicas]
            self.delete_pods_in_background([pod.name for pod in doomed])
        with self.lock:
            current = [pod for pod in self.pods.values() if not pod.terminating.is_set()]
        ready = sum(1 for pod in current if pod.ready)
        self.write_status(
            {
                "replicas": len(current),
                "fullyLabeledReplicas": len(current),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": int(obj["metadata"].get("generation", 1)),
            }
        )


class DeploymentController(WorkloadController):
    """A ReplicaSet per template (``<deployment>-<pod-template-hash>``), rolled as the strategy says."""

    kind = "Deployment"
    api_version = "apps/v1"

    def owned_kinds(self) -> tuple[str, ...]:
        return ("ReplicaSet",)

    def reconcile(self, obj: dict) -> None:
        store = self.runtime.store
        spec = obj["spec"]
        replicas = int(spec.get("replicas", 1))
        template = json.loads(json.dumps(spec["template"]))
        pod_hash = template_hash(template)
        owned = [rs for rs in store.list("ReplicaSet", self.namespace) if self.owns(rs)]
        new = next((rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == pod_hash), None)
        revisions = [int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0)) for rs in owned]
        if new is None:
            if self.runtime.shutdown.is_set():
                return
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
            selector = json.loads(json.dumps(spec.get("selector") or {}))
            selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
            new = store.create(
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"{self.name}-{pod_hash}",
                        "namespace": self.namespace,
                        "labels": {**((spec["template"].get("metadata") or {}).get("labels") or {}), "pod-template-hash": pod_hash},
                        "annotations": {
                            "deployment.kubernetes.io/revision": str(max(revisions, default=0) + 1),
                            "deployment.kubernetes.io/desired-replicas": str(replicas),
                        },
                        "ownerReferences": [self.owner_reference()],
                    },
                    "spec": {"replicas": 0, "selector": selector, "template": template},
                }
            )
            return
        old = sorted(
            (rs for rs in owned if rs is not new and rs["metadata"]["name"] != new["metadata"]["name"]),
            key=lambda rs: rs["metadata"].get("creationTimestamp", ""),
        )

        def counts(rs: dict) -> dict[str, int]:
            status = rs.get("status") or {}
            return {
                "replicas": int(rs["spec"].get("replicas", 0)),
                "available": int(status.get("availableReplicas", 0)),
                "existing": int(status.get("replicas", 0)),
            }

        new_count, old_counts = rollout_step(replicas, spec.get("strategy") or {}, counts(new), [counts(rs) for rs in old])
        for rs, count in [(new, new_count), *zip(old, old_counts)]:
            if int(rs["spec"].get("replicas", 0)) != count:
                with contextlib.suppress(LocalApiError):
                    store.patch_merge("ReplicaSet", self.namespace, rs["metadata"]["name"], {"spec": {"replicas": count}})
        # Old ReplicaSets beyond revisionHistoryLimit, scaled to zero and empty, go.
        limit = int(spec.get("revisionHistoryLimit", 10))
        idle = [rs for rs in old if not int(rs["spec"].get("replicas", 0)) and not int((rs.get("status") or {}).get("replicas", 0))]
        for rs in idle[: max(0, len(idle) - limit)]:
            with contextlib.suppress(LocalApiError):
                store.delete("ReplicaSet", self.namespace, rs["metadata"]["name"])
        statuses = [rs.get("status") or {} for rs in [new, *old]]
        total = sum(int(s.get("replicas", 0)) for s in statuses)
        available = sum(int(s.get("availableReplicas", 0)) for s in statuses)
        new_status = new.get("status") or {}
        updated = int(new_status.get("replicas", 0))
        complete = updated == replicas and total == replicas and int(new_status.get("availableReplicas", 0)) == replicas
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        min_available = replicas - resolve_count(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        self.write_status(
            {
                "observedGeneration": int(obj["metadata"].get("generation", 1)),
                "replicas": total,
                "updatedReplicas": updated,
                "readyReplicas": sum(int(s.get("readyReplicas", 0)) for s in statuses),
                "availableReplicas": available,
                "unavailableReplicas": max(0, replicas - available),
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True" if available >= min_available else "False",
                        "reason": "MinimumReplicasAvailable" if available >= min_available else "MinimumReplicasUnavailable",
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                        "message": f'ReplicaSet "{new["metadata"]["name"]}" ' + ("has successfully progressed." if complete else "is progressing."),
                    },
                ],
            }
        )


class JobController(WorkloadController):
    """Pods of the template until ``completions`` succeed (``parallelism`` at a time), a new pod for
    each failed one (restartPolicy Never) or restarts in place (OnFailure), up to ``backoffLimit``
    failures, within ``activeDeadlineSeconds``; then the Job's Complete or Failed condition."""

    kind = "Job"
    api_version = "batch/v1"

    def __init__(self, runtime: Runtime, obj: dict) -> None:
        super().__init__(runtime, obj)
        self.started: float | None = None
        self.finished = False
        self.next_pod_at = 0.0
        self.failures = 0
        self.counted: set[str] = set()

    def reconcile(self, obj: dict) -> None:
        spec = obj["spec"]
        status = obj.get("status") or {}
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in status.get("conditions") or []):
            self.finished = True
            self._expire(obj)
            return
        if self.started is None:
            self.started = time.monotonic()
            self.write_status({"startTime": now(), "active": 0, "succeeded": 0, "failed": 0, "ready": 0})
        template = spec["template"]
        policy = (template.get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            self.runtime.log(f"job {self.namespace}/{self.name}: restartPolicy {policy!r} is invalid for a Job (Never or OnFailure)")
            return
        with self.lock:
            pods = list(self.pods.values())
        succeeded = sum(1 for pod in pods if pod.phase == "Succeeded")
        for pod in pods:
            if pod.phase == "Failed" and pod.name not in self.counted:
                self.counted.add(pod.name)
                self.failures += 1
                self.next_pod_at = time.monotonic() + min(self.runtime.options.backoff_initial * 2 ** (self.failures - 1), self.runtime.options.backoff_max)
        # Restarts in place (OnFailure) count as failures too.
        restarts = sum(c.restart_count for pod in pods for c in pod.containers + pod.init_containers)
        failed = self.failures + restarts
        active = [pod for pod in pods if pod.phase in ("Pending", "Running") and not pod.terminating.is_set()]
        outcome = job_outcome(spec, succeeded, failed, self.started, time.monotonic())
        if outcome is not None:
            condition, reason = outcome
            self.delete_pods_in_background([pod.name for pod in active])
            messages = {
                "BackoffLimitExceeded": "Job has reached the specified backoff limit",
                "DeadlineExceeded": "Job was active longer than specified deadline",
                "Completed": "",
            }
            conditions = [{"type": condition, "status": "True", "reason": reason, "message": messages[reason], "lastTransitionTime": now()}]
            if condition == "Complete":
                conditions.insert(0, {"type": "SuccessCriteriaMet", "status": "True", "reason": reason, "lastTransitionTime": now()})
            else:
                conditions.insert(0, {"type": "FailureTarget", "status": "True", "reason": reason, "lastTransitionTime": now()})
            extra = {"completionTime": now()} if condition == "Complete" else {}
            self.write_status({"active": 0, "ready": 0, "succeeded": succeeded, "failed": failed, "conditions": conditions, **extra})
            self.finished = True
            return
        completions = int(spec.get("completions", 1) if spec.get("completions") is not None else 1)
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        wanted = min(parallelism, completions - succeeded) - len(active)
        if wanted > 0 and time.monotonic() >= self.next_pod_at and not self.runtime.shutdown.is_set():
            labels = {
                **((template.get("metadata") or {}).get("labels") or {}),
                "batch.kubernetes.io/job-name": self.name,
                "job-name": self.name,
                "batch.kubernetes.io/controller-uid": self.uid,
                "controller-uid": self.uid,
            }
            for _index in range(wanted):
                active.append(self.start_pod(template, labels))
        self.write_status({"active": len(active), "ready": sum(1 for pod in active if pod.ready), "succeeded": succeeded, "failed": failed})

    def _expire(self, obj: dict) -> None:
        ttl = obj["spec"].get("ttlSecondsAfterFinished")
        finished = parse_time(
            next((c.get("lastTransitionTime") for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") in ("Complete", "Failed")), None)
        )
        if ttl is not None and finished is not None and datetime.datetime.now(datetime.timezone.utc) - finished >= datetime.timedelta(seconds=float(ttl)):
            with contextlib.suppress(LocalApiError):
                self.runtime.store.delete("Job", self.namespace, self.name)


def job_from_cronjob(cronjob: dict, name: str, manual: bool, scheduled: datetime.datetime | None = None) -> dict:
    """The Job a CronJob makes: its jobTemplate, owned by it (as ``kubectl create job --from`` makes,
    with the ``cronjob.kubernetes.io/instantiate: manual`` annotation, when ``manual``)."""
    template = json.loads(json.dumps(cronjob["spec"]["jobTemplate"]))
    metadata = template.get("metadata") or {}
    annotations = dict(metadata.get("annotations") or {})
    if manual:
        annotations["cronjob.kubernetes.io/instantiate"] = "manual"
    if scheduled is not None:
        annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] = scheduled.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cron_meta = cronjob["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cron_meta["namespace"],
            "labels": dict(metadata.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": cron_meta["name"],
                    "uid": cron_meta.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": not manual,
                }
            ],
        },
        "spec": template["spec"],
    }


class CronJobController(WorkloadController):
    """Jobs ``<cronjob>-<minutes since the epoch>`` at the schedule's times in its ``timeZone``, as
    ``concurrencyPolicy`` allows, within ``startingDeadlineSeconds``; history trimmed to the limits."""

    kind = "CronJob"
    api_version = "batch/v1"

    def owned_kinds(self) -> tuple[str, ...]:
        return ("Job",)

    def reconcile(self, obj: dict) -> None:
        store = self.runtime.store
        spec = obj["spec"]
        status = obj.get("status") or {}
        jobs = [job for job in store.list("Job", self.namespace) if self.owns(job)]

        def finished(job: dict) -> str | None:
            for condition in (job.get("status") or {}).get("conditions") or []:
                if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
                    return condition["type"]
            return None

        active = [job for job in jobs if finished(job) is None]
        now_time = datetime.datetime.now(datetime.timezone.utc)
        last = parse_time(status.get("lastScheduleTime")) or parse_time(obj["metadata"].get("creationTimestamp")) or now_time
        updates: dict = {}
        if not spec.get("suspend"):
            try:
                due = cron_times(spec["schedule"], spec.get("timeZone"), last, now_time)
            except (ValueError, zoneinfo.ZoneInfoNotFoundError) as error:
                self.runtime.log(f"cronjob {self.namespace}/{self.name}: {error}")
                due = []
            deadline = spec.get("startingDeadlineSeconds")
            if due and (deadline is None or (now_time - due[-1]).total_seconds() <= float(deadline)):
                scheduled = due[-1]
                policy = spec.get("concurrencyPolicy") or "Allow"
                if policy == "Forbid" and active:
                    self.runtime.log(f"cronjob {self.namespace}/{self.name}: a run is due but one is active (Forbid), skipped")
                else:
                    if policy == "Replace":
                        for job in active:
                            with contextlib.suppress(LocalApiError):
                                store.delete("Job", self.namespace, job["metadata"]["name"])
                    name = f"{self.name}-{int(scheduled.timestamp() // 60)}"
                    with contextlib.suppress(LocalApiError):
                        store.create(job_from_cronjob(obj, name, manual=False, scheduled=scheduled))
                updates["lastScheduleTime"] = scheduled.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            elif due:
                updates["lastScheduleTime"] = due[-1].astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        done = sorted((job for job in jobs if finished(job)), key=lambda job: job["metadata"].get("creationTimestamp", ""))
        for kind, limit in (("Complete", int(spec.get("successfulJobsHistoryLimit", 3))), ("Failed", int(spec.get("failedJobsHistoryLimit", 1)))):
            of_kind = [job for job in done if finished(job) == kind]
            for job in of_kind[: max(0, len(of_kind) - limit)]:
                with contextlib.suppress(LocalApiError):
                    store.delete("Job", self.namespace, job["metadata"]["name"])
        successes = [job for job in done if finished(job) == "Complete"]
        if successes:
            updates["lastSuccessfulTime"] = (successes[-1].get("status") or {}).get("completionTime")
        updates["active"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "namespace": self.namespace, "uid": job["metadata"].get("uid")}
            for job in active
        ]
        self.write_status(updates)
