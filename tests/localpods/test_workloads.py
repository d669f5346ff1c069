# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deployments, ReplicaSets, Jobs and CronJobs of the runtime, with real processes, and the pure
decisions behind them (rollout steps, Job outcomes, cron schedules) on their own."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable

import pytest

from tests.localpods import cli
from tests.localpods._api import LocalApiError
from tests.localpods.fixtures import LocalPods, eventually
from tests.localpods.workloads import (
    cron_times,
    job_outcome,
    parse_cron,
    rollout_step,
    statefulset_pod_to_update,
    statefulset_revision_of_new_pod,
    template_hash,
)

NAMESPACE = "work"
TOY = "localpods/toy"
# Where a Job's pods keep what outlives each of them: a claim.
STATE = "/var/lib/postgresql/state"


def toy(script: str, **extra) -> dict:
    return {"name": "toy", "image": TOY, "command": ["sh", "-c", script], **extra}


def deployment(name: str, version: str, strategy: dict | None = None) -> dict:
    container = toy("exec sleep infinity", env=[{"name": "VERSION", "value": version}], readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}},
        },
    }


def job(name: str, script: str, restart_policy: str = "Never", **spec) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": restart_policy,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [toy(script, volumeMounts=[{"name": "state", "mountPath": STATE}])],
                    "volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": f"{name}-state"}}],
                }
            },
        },
    }


# A run that fails until it has run three times: the count lives on a claim, which outlives pods.
FAIL_TWICE = f'n=$(cat {STATE}/n 2>/dev/null || echo 0); echo $((n + 1)) > {STATE}/n; echo "run $n"; [ "$n" -ge 2 ]'


def replace(runtime: LocalPods, kind: str, name: str, change: Callable[[dict], None]) -> dict:
    """Reads, changes and replaces an object as a client does; a status write in between is a
    conflict, and the object is read again."""
    store = runtime.store()

    def replaced() -> dict | None:
        live = store.get(kind, NAMESPACE, name)
        change(live)
        try:
            return store.replace(live)
        except LocalApiError as error:
            if error.status != 409:
                raise
            return None

    return eventually(replaced, timeout=10, interval=0.01, message=f"{kind} {name} replaced")


def pods_of(runtime: LocalPods, prefix: str) -> list[dict]:
    return [pod for pod in runtime.pods(NAMESPACE) if pod["metadata"]["name"].startswith(prefix + "-")]


def job_condition(runtime: LocalPods, name: str) -> dict | None:
    obj = runtime.store().get("Job", NAMESPACE, name) or {}
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return {**condition, **{key: obj["status"].get(key) for key in ("succeeded", "failed", "active")}}
    return None


# -- Deployments ---------------------------------------------------------------------------------


def test_a_deployment_of_two_rolls_to_a_new_template_keeping_two_ready(localpods_factory) -> None:
    runtime = localpods_factory(None)
    store = runtime.store()
    store.create(deployment("web", "1"))

    def ready_pods(version_hash: str | None = None) -> list[dict]:
        found = [pod for pod in pods_of(runtime, "web") if cli.is_ready(pod)]
        return [pod for pod in found if version_hash is None or pod["metadata"]["labels"].get("pod-template-hash") == version_hash]

    first = eventually(lambda: len(ready_pods()) == 2 and ready_pods(), timeout=60, message="two ready pods")
    first_hash = first[0]["metadata"]["labels"]["pod-template-hash"]
    assert all(pod["metadata"]["name"].startswith(f"web-{first_hash}-") for pod in first)
    assert {pod["metadata"]["ownerReferences"][0]["kind"] for pod in first} == {"ReplicaSet"}

    live = replace(runtime, "Deployment", "web", lambda obj: obj["spec"]["template"]["spec"]["containers"][0].update(env=[{"name": "VERSION", "value": "2"}]))
    new_hash = template_hash(live["spec"]["template"])
    assert new_hash != first_hash
    least_ready = 2

    def rolled() -> bool:
        nonlocal least_ready
        least_ready = min(least_ready, len(ready_pods()))
        status = store.get("Deployment", NAMESPACE, "web").get("status") or {}
        names = [pod["metadata"]["name"] for pod in pods_of(runtime, "web")]
        return status.get("updatedReplicas") == 2 and status.get("availableReplicas") == 2 and len(names) == 2 and len(ready_pods(new_hash)) == 2

    eventually(rolled, timeout=90, interval=0.05, message="the rollout to the new template")
    assert least_ready >= 2, "maxUnavailable 0: two pods stayed ready through the rollout"
    replica_sets = {rs["metadata"]["name"]: rs["spec"]["replicas"] for rs in store.list("ReplicaSet", NAMESPACE)}
    assert replica_sets == {f"web-{first_hash}": 0, f"web-{new_hash}": 2}
    conditions = {c["type"]: c for c in store.get("Deployment", NAMESPACE, "web")["status"]["conditions"]}
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable" and conditions["Available"]["status"] == "True"
    pod = ready_pods(new_hash)[0]["metadata"]["name"]
    answer = runtime.request("exec-process", namespace=NAMESPACE, pod=pod, container="toy", argv=["sh", "-c", "echo $VERSION"])
    assert answer["ok"] and answer["stdout"] == "2\n"


def test_deleting_a_deployment_takes_its_replica_sets_and_pods(localpods_factory) -> None:
    runtime = localpods_factory(None)
    store = runtime.store()
    store.create(deployment("gone", "1"))
    eventually(lambda: len([p for p in pods_of(runtime, "gone") if cli.is_ready(p)]) == 2, timeout=60, message="two ready pods")
    store.delete("Deployment", NAMESPACE, "gone")
    eventually(lambda: not pods_of(runtime, "gone") and not store.list("ReplicaSet", NAMESPACE), timeout=60, message="pods and ReplicaSets gone")
    assert runtime.request("pods-of", namespace=NAMESPACE)["pods"] == []


@pytest.mark.parametrize(
    "replicas, strategy, new, old, expected",
    [
        # maxSurge 1, maxUnavailable 0: one more new pod, no old one goes before a new one is available.
        (2, {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, (0, 0, 0), [(2, 2, 2)], (1, [2])),
        (2, {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, (1, 1, 1), [(2, 2, 2)], (1, [1])),
        (2, {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, (1, 1, 1), [(1, 1, 1)], (2, [1])),
        (2, {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, (2, 2, 2), [(1, 1, 1)], (2, [0])),
        # The defaults, 25 % of 4: one surge, one unavailable.
        (4, {}, (0, 0, 0), [(4, 4, 4)], (1, [3])),
        # An old pod that is not available goes at once, whatever the budget.
        (2, {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, (1, 0, 1), [(2, 1, 2)], (1, [1])),
        # Recreate: old ones to zero first, the new one only once their pods are gone.
        (2, {"type": "Recreate"}, (0, 0, 0), [(2, 2, 2)], (0, [0])),
        (2, {"type": "Recreate"}, (0, 0, 0), [(0, 0, 1)], (0, [0])),
        (2, {"type": "Recreate"}, (0, 0, 0), [(0, 0, 0)], (2, [0])),
        # Scaling down the current one.
        (1, {}, (2, 2, 2), [], (1, [])),
    ],
)
def test_rollout_steps(replicas: int, strategy: dict, new: tuple, old: list[tuple], expected: tuple) -> None:
    def counts(values: tuple) -> dict[str, int]:
        return dict(zip(("replicas", "available", "existing"), values))

    assert rollout_step(replicas, strategy, counts(new), [counts(rs) for rs in old]) == expected


def test_a_template_hash_is_stable_and_follows_the_template() -> None:
    template = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    same = {"spec": {"containers": [{"image": "x", "name": "c"}]}, "metadata": {"labels": {"app": "a"}}}
    other = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "y"}]}}
    assert template_hash(template) == template_hash(same) != template_hash(other)
    assert len(template_hash(template)) == 10 and not set(template_hash(template)) & set("aeiou013")


# -- Jobs ---------------------------------------------------------------------------------------


def test_a_job_that_fails_twice_then_succeeds_within_its_backoff_limit_completes(localpods_factory) -> None:
    runtime = localpods_factory(None, options=["--backoff-initial=0.2", "--backoff-max=1"])
    runtime.store().create(job("flaky", FAIL_TWICE, backoffLimit=3))
    done = eventually(lambda: job_condition(runtime, "flaky"), timeout=90, message="the Job finished")
    assert (done["type"], done["reason"], done["succeeded"], done["failed"]) == ("Complete", "Completed", 1, 2)
    phases = sorted(pod["status"]["phase"] for pod in pods_of(runtime, "flaky"))
    assert phases == ["Failed", "Failed", "Succeeded"], "restartPolicy Never: a new pod for each failure, the failed ones kept"
    assert all(pod["metadata"]["labels"]["job-name"] == "flaky" for pod in pods_of(runtime, "flaky"))
    assert (runtime.store().get("Job", NAMESPACE, "flaky")["status"]).get("completionTime")


def test_a_job_that_keeps_failing_stops_at_its_backoff_limit(localpods_factory) -> None:
    runtime = localpods_factory(None, options=["--backoff-initial=0.2", "--backoff-max=1"])
    runtime.store().create(job("hopeless", "exit 1", backoffLimit=1))
    done = eventually(lambda: job_condition(runtime, "hopeless"), timeout=90, message="the Job failed")
    assert (done["type"], done["reason"], done["failed"], done["succeeded"]) == ("Failed", "BackoffLimitExceeded", 2, 0)
    assert len(pods_of(runtime, "hopeless")) == 2


def test_on_failure_restarts_in_place_and_counts_the_restarts(localpods_factory) -> None:
    runtime = localpods_factory(None, options=["--backoff-initial=0.2", "--backoff-max=1"])
    runtime.store().create(job("inplace", FAIL_TWICE, restart_policy="OnFailure", backoffLimit=3))
    done = eventually(lambda: job_condition(runtime, "inplace"), timeout=90, message="the Job finished")
    assert (done["type"], done["succeeded"]) == ("Complete", 1)
    [pod] = pods_of(runtime, "inplace")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 2 and pod["status"]["phase"] == "Succeeded"


def test_a_job_past_its_active_deadline_is_failed_and_its_pod_killed(localpods_factory) -> None:
    runtime = localpods_factory(None)
    runtime.store().create(job("slow", "exec sleep infinity", activeDeadlineSeconds=2))
    done = eventually(lambda: job_condition(runtime, "slow"), timeout=60, message="the Job stopped by its deadline")
    assert (done["type"], done["reason"]) == ("Failed", "DeadlineExceeded")
    eventually(lambda: not pods_of(runtime, "slow"), timeout=30, message="its pod deleted")


@pytest.mark.parametrize(
    "spec, succeeded, failed, elapsed, expected",
    [
        ({}, 1, 0, 0, ("Complete", "Completed")),
        ({"completions": 3}, 2, 0, 0, None),
        ({"backoffLimit": 2}, 0, 2, 0, None),
        ({"backoffLimit": 2}, 0, 3, 0, ("Failed", "BackoffLimitExceeded")),
        ({}, 0, 6, 0, None),
        ({}, 0, 7, 0, ("Failed", "BackoffLimitExceeded")),
        ({"activeDeadlineSeconds": 10}, 0, 0, 9.9, None),
        ({"activeDeadlineSeconds": 10}, 0, 0, 10, ("Failed", "DeadlineExceeded")),
    ],
)
def test_job_outcomes(spec: dict, succeeded: int, failed: int, elapsed: float, expected) -> None:
    assert job_outcome(spec, succeeded, failed, 100.0, 100.0 + elapsed) == expected


# -- CronJobs -----------------------------------------------------------------------------------


def cronjob(name: str, schedule: str, **spec) -> dict:
    template = job(name, "echo backed up")["spec"]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"schedule": schedule, "jobTemplate": {"metadata": {"labels": {"app": name}}, "spec": template}, **spec},
    }


def test_create_job_from_a_cronjob_runs_it_now(localpods_factory) -> None:
    runtime = localpods_factory(None)
    # Once a year, in a time zone: it will not run by itself during the test.
    runtime.store().create(cronjob("backup", "0 3 1 1 *", timeZone="Asia/Tokyo"))
    created = runtime.cli("create-job", "--namespace", NAMESPACE, "backup-manual", "--from", "cronjob/backup")
    assert created.stdout.strip() == "job.batch/backup-manual created"
    done = eventually(lambda: job_condition(runtime, "backup-manual"), timeout=60, message="the manual Job finished")
    assert done["type"] == "Complete"
    made = runtime.store().get("Job", NAMESPACE, "backup-manual")
    assert made["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert made["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    refused = runtime.cli("create-job", "--namespace", NAMESPACE, "x", "--from", "cronjob/nope", check=False)
    assert refused.returncode == 1 and 'cronjobs.batch "nope" not found' in refused.stderr
    again = runtime.cli("create-job", "--namespace", NAMESPACE, "backup-manual", "--from", "cronjob/backup", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_a_cronjob_runs_what_its_schedule_made_due_and_forbids_a_second_at_once(localpods_factory) -> None:
    """The CronJob last ran five minutes ago by its status: the latest time due since then runs now;
    under Forbid, no second Job while the first is active."""
    runtime = localpods_factory(None)
    store = runtime.store()
    five_minutes_ago = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj = cronjob("every", "* * * * *", concurrencyPolicy="Forbid", startingDeadlineSeconds=600)
    obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "exec sleep infinity"]
    obj["status"] = {"lastScheduleTime": five_minutes_ago}
    store.create(obj)
    jobs = eventually(lambda: [j for j in store.list("Job", NAMESPACE) if j["metadata"]["name"].startswith("every-")], timeout=30, message="a scheduled Job")
    assert len(jobs) == 1
    scheduled = jobs[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert scheduled > five_minutes_ago
    eventually(
        lambda: [a["name"] for a in (store.get("CronJob", NAMESPACE, "every").get("status") or {}).get("active", [])] == [jobs[0]["metadata"]["name"]],
        timeout=30,
        message="status.active",
    )


@pytest.mark.parametrize(
    "schedule, zone, after, expected",
    [
        ("*/15 * * * *", None, "2026-12-07T10:01:00", ["10:15", "10:30", "10:45", "11:00"]),
        ("0 3 * * *", "Asia/Tokyo", "2026-12-06T00:00:00", ["2026-12-06T18:00"]),
        ("30 2 * * mon-fri", None, "2026-12-05T00:00:00", ["2026-12-07T02:30"]),
        ("0 0 1 * 0", None, "2026-11-25T00:00:00", ["2026-11-29T00:00", "2026-12-01T00:00"]),
        ("@hourly", None, "2026-12-07T10:30:00", ["11:00"]),
    ],
)
def test_cron_times(schedule: str, zone: str | None, after: str, expected: list[str]) -> None:
    start = datetime.datetime.fromisoformat(after).replace(tzinfo=datetime.timezone.utc)
    found = cron_times(schedule, zone, start, start + datetime.timedelta(days=7) if len(expected[0]) > 5 else start + datetime.timedelta(hours=1))
    shown = [moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M" if len(expected[0]) > 5 else "%H:%M") for moment in found]
    assert shown[: len(expected)] == expected


@pytest.mark.parametrize("schedule", ["* * * *", "61 * * * *", "* 24 * * *", "*/0 * * * *", "* * * foo *", "5-1 * * * *"])
def test_bad_cron_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(ValueError):
        parse_cron(schedule)


@pytest.mark.parametrize("schedule", ["* * * * *", "0 3 * * *", "*/5 1-3 1,15 jan-jun sun", "@daily", "0 0 * * 7"])
def test_good_cron_schedules_are_taken(schedule: str) -> None:
    assert len(parse_cron(schedule)[0]) == 5


# -- StatefulSet updates ---------------------------------------------------------------------------


def versioned_statefulset(name: str, replicas: int, strategy: dict) -> dict:
    container = toy("exec sleep infinity", env=[{"name": "VERSION", "value": "1"}], readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}},
        },
    }


def set_version(runtime: LocalPods, name: str, version: str, partition: int | None = None) -> str:
    """Changes the template's VERSION (and the partition, when given); returns the new revision."""

    def change(live: dict) -> None:
        live["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "VERSION", "value": version}]
        if partition is not None:
            live["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = partition

    live = replace(runtime, "StatefulSet", name, change)
    return f"{name}-{template_hash(live['spec']['template'])}"


def versions(runtime: LocalPods, name: str) -> dict[str, tuple[str, str]]:
    """pod -> (VERSION it runs with, its controller-revision-hash label)."""
    found = {}
    for pod in runtime.pods(NAMESPACE, name):
        pod_name = pod["metadata"]["name"]
        answer = runtime.request("exec-process", namespace=NAMESPACE, pod=pod_name, container="toy", argv=["sh", "-c", "echo $VERSION"])
        found[pod_name] = (answer.get("stdout", "").strip(), pod["metadata"]["labels"]["controller-revision-hash"])
    return found


def sts_status(runtime: LocalPods, name: str) -> dict:
    return runtime.store().get("StatefulSet", NAMESPACE, name).get("status") or {}


def test_on_delete_a_pod_takes_the_new_template_only_when_deleted(localpods_factory) -> None:
    runtime = localpods_factory(None)
    runtime.store().create(versioned_statefulset("od", 2, {"type": "OnDelete"}))
    runtime.wait_ready(2, timeout=60, namespace=NAMESPACE, statefulset="od")
    first = sts_status(runtime, "od")["currentRevision"]
    new = set_version(runtime, "od", "2")
    eventually(lambda: sts_status(runtime, "od").get("updateRevision") == new, timeout=30, message="the update revision")
    status = sts_status(runtime, "od")
    assert (status["currentRevision"], status["updatedReplicas"], status["currentReplicas"]) == (first, 0, 2)
    assert versions(runtime, "od") == {"od-0": ("1", first), "od-1": ("1", first)}
    runtime.cli("delete-pod", "--namespace", NAMESPACE, "od-1")
    runtime.wait_ready(2, timeout=60, namespace=NAMESPACE, statefulset="od")
    assert versions(runtime, "od") == {"od-0": ("1", first), "od-1": ("2", new)}
    assert sts_status(runtime, "od")["updatedReplicas"] == 1
    revisions = {rev["metadata"]["name"] for rev in runtime.store().list("ControllerRevision", NAMESPACE)}
    assert revisions == {first, new}


def test_rolling_update_goes_from_the_highest_ordinal_down_to_the_partition(localpods_factory) -> None:
    runtime = localpods_factory(None)
    runtime.store().create(versioned_statefulset("ru", 3, {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}))
    runtime.wait_ready(3, timeout=60, namespace=NAMESPACE, statefulset="ru")
    first = sts_status(runtime, "ru")["currentRevision"]
    new = set_version(runtime, "ru", "2")
    eventually(
        lambda: sts_status(runtime, "ru").get("updatedReplicas") == 2 and sts_status(runtime, "ru").get("readyReplicas") == 3, timeout=90, message="two updated"
    )
    assert versions(runtime, "ru") == {"ru-0": ("1", first), "ru-1": ("2", new), "ru-2": ("2", new)}
    assert sts_status(runtime, "ru")["currentRevision"] == first, "below the partition, the current revision stays"
    rolled = [line.split("rolling ")[1].split()[0] for line in daemon_log(runtime).splitlines() if "statefulset work/ru: rolling" in line]
    assert rolled == ["ru-2", "ru-1"], "the highest ordinal first, one at a time"
    # A pod below the partition deleted comes back at the current revision.
    runtime.cli("delete-pod", "--namespace", NAMESPACE, "ru-0")
    runtime.wait_ready(3, timeout=60, namespace=NAMESPACE, statefulset="ru")
    assert versions(runtime, "ru")["ru-0"] == ("1", first)
    set_version(runtime, "ru", "2", partition=0)
    eventually(
        lambda: sts_status(runtime, "ru").get("currentRevision") == new and sts_status(runtime, "ru").get("readyReplicas") == 3,
        timeout=90,
        message="all updated",
    )
    assert versions(runtime, "ru") == {f"ru-{o}": ("2", new) for o in range(3)}


@pytest.mark.parametrize(
    "members, replicas, strategy, expected",
    [
        ({0: ("a", True), 1: ("a", True), 2: ("a", True)}, 3, {}, 2),
        ({0: ("a", True), 1: ("a", True), 2: ("b", True)}, 3, {}, 1),
        # A member not ready, or missing: wait.
        ({0: ("a", True), 1: ("a", False), 2: ("b", True)}, 3, {}, None),
        ({0: ("a", True), 2: ("b", True)}, 3, {}, None),
        ({0: ("a", True), 1: ("b", True), 2: ("b", True)}, 3, {"rollingUpdate": {"partition": 1}}, None),
        ({0: ("b", True), 1: ("b", True)}, 2, {}, None),
        ({0: ("a", True), 1: ("a", True)}, 2, {"type": "OnDelete"}, None),
    ],
)
def test_statefulset_pod_to_update(members: dict, replicas: int, strategy: dict, expected) -> None:
    assert statefulset_pod_to_update(members, replicas, {"type": "RollingUpdate", **strategy}, "b") == expected


@pytest.mark.parametrize(
    "ordinal, strategy, expected",
    [
        (0, {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}, "current"),
        (1, {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}, "update"),
        (0, {"type": "RollingUpdate"}, "update"),
        (0, {"type": "OnDelete"}, "update"),
    ],
)
def test_statefulset_revision_of_a_new_pod(ordinal: int, strategy: dict, expected: str) -> None:
    assert statefulset_revision_of_new_pod(ordinal, strategy, "current", "update") == expected


def daemon_log(runtime: LocalPods) -> str:
    with open(os.path.join(runtime.state_dir, "daemon.log"), encoding="utf-8") as handle:
        return handle.read()
