"""The runtime's controllers react to the object store only: StatefulSets created, scaled and deleted
there, Pods and claims deleted there, several StatefulSets in several namespaces side by side; and the
interface an API server calls to exec into pods and to read their logs.

The pods are cheap toys (a shell script, ``sleep``) built here, not the rendered cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.localpods import cli
from tests.localpods.fixtures import CLI, LocalPods, eventually, still_running

DATA = "/var/lib/postgresql/data"
CONFIG = "/etc/postgresql/toy"


def toy_config(namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "toy-config", "namespace": namespace},
        "data": {"greeting": f"hello from {namespace}"},
    }


def toy_statefulset(name: str, namespace: str, replicas: int, policy: str = "Parallel") -> dict:
    """A StatefulSet whose init container marks its data volume and whose container sleeps; both read
    ConfigMap toy-config of their namespace, through the environment and a volume."""
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "toy-config", "key": "greeting"}}},
    ]
    mounts = [{"name": "data", "mountPath": DATA}, {"name": "config", "mountPath": CONFIG}]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "initContainers": [
                        {
                            "name": "init",
                            "image": "localpods/toy",
                            "command": ["sh", "-c", f"echo init of $POD_NAME; touch {DATA}/initialised"],
                            "env": env,
                            "volumeMounts": mounts,
                        }
                    ],
                    "containers": [{"name": "main", "image": "localpods/toy", "command": ["sleep", "infinity"], "env": env, "volumeMounts": mounts}],
                    "volumes": [{"name": "config", "configMap": {"name": "toy-config"}}],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }


def start_toy(runtime: LocalPods, namespace: str, replicas: int, name: str = "toy", policy: str = "Parallel") -> None:
    """Creates the toy StatefulSet (and its ConfigMap) in the store and waits for its ready pods."""
    store = runtime.store()
    if store.get("ConfigMap", namespace, "toy-config") is None:
        store.create(toy_config(namespace))
    store.create(toy_statefulset(name, namespace, replicas, policy))
    runtime.wait_ready(replicas, timeout=90, namespace=namespace, statefulset=name)


def run_in(runtime: LocalPods, namespace: str, pod: str, *argv: str, container: str = "main", stdin: str | None = None) -> dict:
    """Runs argv through the daemon's Runtime.exec_process; the answer must be a success."""
    answer = runtime.request("exec-process", namespace=namespace, pod=pod, container=container, argv=list(argv), stdin=stdin)
    assert answer["ok"], answer
    return answer


def refusal(answer: dict) -> tuple[int, str]:
    assert not answer["ok"], answer
    return answer["status"], answer["error"]


def pod_names(runtime: LocalPods, namespace: str, statefulset: str = "toy") -> list[str]:
    return runtime.pod_names(namespace, statefulset)


def claim_names(runtime: LocalPods, namespace: str) -> list[str]:
    return sorted(claim["metadata"]["name"] for claim in runtime.store().list("PersistentVolumeClaim", namespace))


def pod_processes(runtime: LocalPods) -> set[tuple[int, str]]:
    return {(pid, started) for pid, started in runtime.processes() if pid != runtime.daemon_pid}


def daemon_log(runtime: LocalPods) -> str:
    with open(os.path.join(runtime.state_dir, "daemon.log"), encoding="utf-8") as handle:
        return handle.read()


def test_statefulset_created_after_an_empty_up_gets_ready_pods(localpods_factory) -> None:
    runtime = localpods_factory(None)
    assert (runtime.info["statefulset"], runtime.info["namespace"], runtime.info["pod_ips"]) == (None, "default", {})
    assert runtime.request("pods-of", namespace="alpha")["pods"] == []
    assert pod_processes(runtime) == set(), "an empty runtime runs no pod"

    start_toy(runtime, "alpha", 2)
    assert pod_names(runtime, "alpha") == ["toy-0", "toy-1"]
    assert runtime.request("pods-of", namespace="alpha")["pods"] == ["toy-0", "toy-1"]
    addresses = [pod["status"]["podIP"] for pod in runtime.pods("alpha", "toy")]
    assert len(set(addresses)) == 2
    eventually(lambda: (runtime.store().get("StatefulSet", "alpha", "toy").get("status") or {}).get("readyReplicas") == 2, message="status.readyReplicas 2")
    assert claim_names(runtime, "alpha") == ["data-toy-0", "data-toy-1"]
    assert os.path.isfile(os.path.join(runtime.volume_dir("data-toy-1", "alpha"), "initialised"))
    # The pods see their own namespace: environment, ConfigMap volume, and the governing Service's names.
    seen = run_in(runtime, "alpha", "toy-0", "sh", "-c", f'echo "$GREETING"; cat {CONFIG}/greeting; echo; getent hosts toy-1.toy.alpha.svc.cluster.local')
    greeting, projected, hosts = seen["stdout"].splitlines()
    assert (greeting, projected) == ("hello from alpha", "hello from alpha")
    assert hosts.split()[0] == addresses[1]


def test_a_statefulset_in_another_namespace_runs_beside_the_imported_one(localpods_factory, tmp_path) -> None:
    """An imported StatefulSet keeps what runtime.json says (its addresses, its pods' paths, the CLI's
    exec); one created in the store in another namespace, of the same name, runs beside it."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    with open(manifests / "toy.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump_all([toy_config("alpha"), toy_statefulset("toy", "alpha", 1)], handle)
    runtime = localpods_factory(str(manifests))
    assert (runtime.info["namespace"], runtime.info["statefulset"]) == ("alpha", "toy")
    start_toy(runtime, "beta", 1)

    alpha, beta = runtime.pod("toy-0", "alpha")["status"]["podIP"], runtime.pod("toy-0", "beta")["status"]["podIP"]
    assert alpha == runtime.info["pod_ips"]["toy-0"]
    assert beta != alpha and beta not in runtime.info["pod_ips"].values()
    for namespace, address in (("alpha", alpha), ("beta", beta)):
        seen = run_in(runtime, namespace, "toy-0", "sh", "-c", f'echo "$GREETING" > {DATA}/owner; cat {DATA}/owner; hostname; getent hosts toy-0.toy')
        greeting, hostname, hosts = seen["stdout"].splitlines()
        assert (greeting, hostname, hosts.split()[0]) == (f"hello from {namespace}", "toy-0", address)
    # Each pod has its own volume: the imported namespace's at the top of the state directory.
    assert runtime.volume_dir("data-toy-0", "alpha") == os.path.join(runtime.state_dir, "volumes", "data-toy-0")
    for namespace in ("alpha", "beta"):
        with open(os.path.join(runtime.volume_dir("data-toy-0", namespace), "owner"), encoding="utf-8") as handle:
            assert handle.read() == f"hello from {namespace}\n"
    assert runtime.exec("toy-0", "cat", f"{DATA}/owner").stdout == "hello from alpha\n"
    assert runtime.cli("exec", "--namespace", "beta", "toy-0", "--", "cat", f"{DATA}/owner").stdout == "hello from beta\n"
    status = subprocess.run(
        [sys.executable, CLI, "--state-dir", runtime.state_dir, "status", "--namespace", "beta"], capture_output=True, text=True, check=True
    )
    assert [line.split()[:2] + line.split()[-1:] for line in status.stdout.splitlines()[1:]] == [["toy-0", "1/1", beta]]
    runtime.cli("delete-pod", "--namespace", "beta", "toy-0")
    eventually(lambda: cli.is_ready(runtime.pod("toy-0", "beta")), timeout=60, message="beta's toy-0 made again")
    assert runtime.pod("toy-0", "beta")["status"]["podIP"] == beta, "a pod's address stays with its name"


def test_replicas_changed_in_the_store_scale_the_statefulset(localpods_factory) -> None:
    runtime = localpods_factory(None)
    start_toy(runtime, "alpha", 1, policy="OrderedReady")
    store = runtime.store()
    store.patch_merge("StatefulSet", "alpha", "toy", {"spec": {"replicas": 3}})
    runtime.wait_ready(3, timeout=90, namespace="alpha", statefulset="toy")
    assert pod_names(runtime, "alpha") == ["toy-0", "toy-1", "toy-2"]

    store.patch_merge("StatefulSet", "alpha", "toy", {"spec": {"replicas": 1}})
    eventually(lambda: pod_names(runtime, "alpha") == ["toy-0"], timeout=60, message="scaled down to 1")
    eventually(lambda: runtime.request("pods-of", namespace="alpha")["pods"] == ["toy-0"], timeout=30, message="the kubelet runs toy-0 only")
    assert refusal(runtime.request("exec-process", namespace="alpha", pod="toy-2", container="main", argv=["true"])) == (404, 'pods "toy-2" not found')
    # whenScaled Retain: the claims of the members scaled away stay.
    assert claim_names(runtime, "alpha") == ["data-toy-0", "data-toy-1", "data-toy-2"]
    assert os.path.isfile(os.path.join(runtime.volume_dir("data-toy-2", "alpha"), "initialised"))
    eventually(lambda: runtime.store().get("StatefulSet", "alpha", "toy")["status"]["replicas"] == 1, message="status.replicas 1")


def test_deleting_the_statefulset_removes_its_pods_and_keeps_its_claims(localpods_factory) -> None:
    runtime = localpods_factory(None)
    start_toy(runtime, "alpha", 2)
    run_in(runtime, "alpha", "toy-1", "sh", "-c", f"echo kept > {DATA}/marker")
    processes = pod_processes(runtime)
    assert processes

    runtime.store().delete("StatefulSet", "alpha", "toy")
    eventually(lambda: runtime.store().list("Pod", "alpha") == [], timeout=60, message="the Pod objects gone")
    eventually(lambda: still_running(processes) == [], timeout=30, message="the pods' processes gone")
    assert runtime.request("pods-of", namespace="alpha")["pods"] == []
    assert claim_names(runtime, "alpha") == ["data-toy-0", "data-toy-1"]
    # The same StatefulSet made again finds its members' data.
    start_toy(runtime, "alpha", 2)
    assert run_in(runtime, "alpha", "toy-1", "cat", f"{DATA}/marker")["stdout"] == "kept\n"


def test_a_deleted_claim_loses_its_volume_once_no_pod_uses_it(localpods_factory) -> None:
    """The claim of a stopped member: its directory goes at once. The claim of a running member: its
    directory stays while the pod runs; the pod made after it gets a new, empty volume."""
    runtime = localpods_factory(None)
    start_toy(runtime, "alpha", 2)
    for pod in ("toy-0", "toy-1"):
        run_in(runtime, "alpha", pod, "sh", "-c", f"echo old > {DATA}/marker")
    runtime.cli("stop", "--namespace", "alpha", "toy-1")
    assert pod_names(runtime, "alpha") == ["toy-0"]
    store = runtime.store()
    old_uid = store.get("PersistentVolumeClaim", "alpha", "data-toy-0")["metadata"]["uid"]
    store.delete("PersistentVolumeClaim", "alpha", "data-toy-0")
    store.delete("PersistentVolumeClaim", "alpha", "data-toy-1")

    eventually(lambda: not os.path.exists(runtime.volume_dir("data-toy-1", "alpha")), timeout=30, message="the stopped member's volume removed")
    eventually(lambda: "claim alpha/data-toy-0 deleted while pods ['toy-0'] use it" in daemon_log(runtime), timeout=30, message="toy-0's claim protected")
    assert run_in(runtime, "alpha", "toy-0", "cat", f"{DATA}/marker")["stdout"] == "old\n"
    assert cli.is_ready(runtime.pod("toy-0", "alpha"))

    store.delete("Pod", "alpha", "toy-0")
    eventually(
        lambda: (store.get("PersistentVolumeClaim", "alpha", "data-toy-0") or {"metadata": {}})["metadata"].get("uid") not in (None, old_uid), timeout=60
    )
    eventually(lambda: cli.is_ready(runtime.pod("toy-0", "alpha")), timeout=60, message="toy-0 made again")
    fresh = run_in(runtime, "alpha", "toy-0", "sh", "-c", f"ls {DATA}")
    assert fresh["stdout"].split() == ["initialised"], "the new claim's volume is a new one"
    runtime.cli("start", "--namespace", "alpha", "toy-1")
    runtime.wait_ready(2, timeout=60, namespace="alpha", statefulset="toy")
    assert run_in(runtime, "alpha", "toy-1", "ls", DATA)["stdout"].split() == ["initialised"]


def test_exec_process_runs_commands_and_refuses_what_kubernetes_refuses(localpods_factory) -> None:
    runtime = localpods_factory(None)
    start_toy(runtime, "alpha", 1)
    script = 'read line; echo "got $line as $(id -un) with $GREETING in $(pwd)"; exit 3'
    done = run_in(runtime, "alpha", "toy-0", "sh", "-c", script, stdin="hello\n")
    assert (done["returncode"], done["stdout"], done["stderr"]) == (3, "got hello as postgres with hello from alpha in /\n", "")
    # Without stdin the command reads end of file at once.
    assert run_in(runtime, "alpha", "toy-0", "sh", "-c", "cat; echo no input")["stdout"] == "no input\n"
    freezer = runtime.freezer()
    if freezer is not None:
        cgroups = run_in(runtime, "alpha", "toy-0", "cat", "/proc/self/cgroup")["stdout"]
        assert (
            f"/{os.path.basename(freezer.root)}/alpha_toy-0/main\n" in cgroups
        ), "the command is in its container's cgroup, below the pod's, which a freeze stops"

    def ask(pod: str, container: str, namespace: str = "alpha") -> tuple[int, str]:
        return refusal(runtime.request("exec-process", namespace=namespace, pod=pod, container=container, argv=["true"]))

    assert ask("toy-9", "main") == (404, 'pods "toy-9" not found')
    assert ask("toy-0", "main", namespace="beta") == (404, 'pods "toy-0" not found')
    assert ask("toy-0", "nope") == (400, "container nope is not valid for pod toy-0")
    # The init container ran to its end: kubelet's words, which kubectl prints after "unable to upgrade connection: ".
    assert ask("toy-0", "init") == (500, 'container not found ("init")')

    log = runtime.request("container-log", namespace="alpha", pod="toy-0", container="init")
    assert log["path"] == os.path.join(runtime.state_dir, "namespaces", "alpha", "pods", "toy-0", "logs", "init.log")
    with open(log["path"], encoding="utf-8") as handle:
        assert "init of toy-0\n" in handle.read()
    previous = runtime.request("container-log", namespace="alpha", pod="toy-0", container="main", previous=True)
    assert refusal(previous) == (400, 'previous terminated container "main" in pod "toy-0" not found')
    assert refusal(runtime.request("container-log", namespace="alpha", pod="toy-0", container="nope")) == (400, "container nope is not valid for pod toy-0")
