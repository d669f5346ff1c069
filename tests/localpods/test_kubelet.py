# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime's kubelet with real processes: every container of a pod supervised on its own,
``exec -c``, liveness and startup probes that restart a container, readiness of the whole pod,
images mapped to what stands in for them (and refused without a mapping), and ConfigMap views that a
test holds stale.

The pods are toys built here (shell loops, ``sleep``) in an empty runtime."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.localpods import cli
from tests.localpods.fixtures import LocalPods, eventually
from tests.localpods.images import ImageMap, ImageMapError, StandIn, parse_reference
from tests.localpods.kubelet import KUBELET_REFRESH_RANGE, kubelet_refresh_delay

NAMESPACE = "kubelet"
TOY = "localpods/toy"


def statefulset(name: str, containers: list[dict], volumes: list[dict] | None = None, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": containers, "volumes": volumes or []},
            },
        },
    }


def container(name: str, script: str, image: str = TOY, **extra) -> dict:
    return {"name": name, "image": image, "command": ["sh", "-c", script], "env": [{"name": "CONTAINER", "value": name}], **extra}


def statuses(runtime: LocalPods, pod: str) -> dict[str, dict]:
    return {status["name"]: status for status in runtime.pod(pod, NAMESPACE)["status"].get("containerStatuses") or []}


def restarts(runtime: LocalPods, pod: str, name: str) -> int:
    return int(statuses(runtime, pod)[name]["restartCount"])


def exec_in(runtime: LocalPods, pod: str, name: str | None, *argv: str) -> subprocess.CompletedProcess:
    """The CLI's exec, with ``-c NAME`` when a container is named."""
    chosen = ["-c", name] if name else []
    return runtime.cli("exec", "--namespace", NAMESPACE, *chosen, pod, "--", *argv, check=False)


def ready(runtime: LocalPods, pod: str) -> bool:
    return cli.is_ready(runtime.pod(pod, NAMESPACE))


# -- every container of a pod -------------------------------------------------------------------


def test_a_crashing_sidecar_is_restarted_alone_and_the_pod_is_ready_only_with_it(localpods_factory) -> None:
    runtime = localpods_factory(None, options=["--backoff-initial=0.5", "--backoff-max=1"])
    crash_flag = "/tmp/crash"
    main = container("main", "echo main $$; exec sleep infinity")
    # The sidecar is ready while it runs; it crashes whenever the shared volume holds the flag.
    sidecar = container(
        "sidecar",
        f"echo sidecar $$; while [ ! -e {crash_flag} ]; do sleep 0.1; done; rm -f {crash_flag}; exit 7",
        volumeMounts=[{"name": "shared", "mountPath": "/tmp"}],
        readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
    )
    main["volumeMounts"] = [{"name": "shared", "mountPath": "/tmp"}]
    runtime.store().create(statefulset("duo", [main, sidecar], [{"name": "shared", "emptyDir": {}}]))
    runtime.wait_ready(1, timeout=60, namespace=NAMESPACE, statefulset="duo")
    assert set(statuses(runtime, "duo-0")) == {"main", "sidecar"}
    main_pid = first_word_after(runtime.log("duo-0", "main", NAMESPACE), "main")

    assert exec_in(runtime, "duo-0", "sidecar", "touch", crash_flag).returncode == 0
    eventually(lambda: restarts(runtime, "duo-0", "sidecar") == 1, timeout=30, message="the sidecar restarted")
    sidecar_status = statuses(runtime, "duo-0")["sidecar"]
    assert sidecar_status["lastState"]["terminated"]["exitCode"] == 7
    eventually(lambda: ready(runtime, "duo-0"), timeout=30, message="the pod ready again with its restarted sidecar")
    assert restarts(runtime, "duo-0", "main") == 0
    assert os.path.exists(f"/proc/{main_pid}") and open(f"/proc/{main_pid}/comm", encoding="utf-8").read() == "sleep\n", "the main container kept its process"
    logs = runtime.log("duo-0", "sidecar", NAMESPACE)
    assert logs.count("localpods: starting sidecar") == 2 and runtime.log("duo-0", "main", NAMESPACE).count("localpods: starting main") == 1


def test_exec_reaches_the_container_it_names_and_refuses_unknown_ones(localpods_factory) -> None:
    runtime = localpods_factory(None)
    containers = [container("main", "exec sleep infinity"), container("helper", "exec sleep infinity")]
    runtime.store().create(statefulset("pair", containers))
    runtime.wait_ready(1, timeout=60, namespace=NAMESPACE, statefulset="pair")
    assert exec_in(runtime, "pair-0", "helper", "sh", "-c", "echo $CONTAINER").stdout == "helper\n"
    assert exec_in(runtime, "pair-0", "main", "sh", "-c", "echo $CONTAINER").stdout == "main\n"
    # Without -c: the pod's first container, as kubectl picks it.
    assert exec_in(runtime, "pair-0", None, "sh", "-c", "echo $CONTAINER").stdout == "main\n"
    refused = exec_in(runtime, "pair-0", "nope", "true")
    assert refused.returncode == cli.EXEC_FAILED and "container nope of pod pair-0 is not running" in refused.stderr
    freezer = runtime.freezer()
    if freezer is not None:
        helper_cgroup = exec_in(runtime, "pair-0", "helper", "cat", "/proc/self/cgroup").stdout
        assert f"/{NAMESPACE}_pair-0/helper\n" in helper_cgroup
    # Through the API server's path: a container must be named in a pod of two.
    answer = runtime.request("exec-process", namespace=NAMESPACE, pod="pair-0", container="", argv=["true"])
    assert (answer["ok"], answer.get("status")) == (False, 400) and "choose one of: [main helper]" in answer["error"]


# -- probes -------------------------------------------------------------------------------------


def test_a_liveness_probe_restarts_a_hung_container(localpods_factory) -> None:
    """The container beats a heart file; the test stops its process (hung, not exited); the
    liveness probe finds the heart old and kubelet restarts the container."""
    runtime = localpods_factory(None)
    beat = "echo $$ > /tmp/pid; while :; do date +%s > /tmp/heart; sleep 0.2; done"
    liveness = {"exec": {"command": ["sh", "-c", "test $(( $(date +%s) - $(cat /tmp/heart) )) -le 2"]}, "periodSeconds": 1, "failureThreshold": 2}
    hung = container("beater", beat, livenessProbe=liveness, volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}])
    runtime.store().create(statefulset("hung", [hung], [{"name": "tmp", "emptyDir": {}}]))
    runtime.wait_ready(1, timeout=60, namespace=NAMESPACE, statefulset="hung")
    assert restarts(runtime, "hung-0", "beater") == 0
    shell = exec_in(runtime, "hung-0", "beater", "cat", "/tmp/pid").stdout.strip()
    os.kill(int(shell), signal.SIGSTOP)
    eventually(lambda: restarts(runtime, "hung-0", "beater") == 1, timeout=60, message="the hung container restarted by its liveness probe")
    last = statuses(runtime, "hung-0")["beater"]["lastState"]["terminated"]
    assert last["message"] == "liveness probe failed"
    eventually(lambda: exec_in(runtime, "hung-0", "beater", "cat", "/tmp/pid").stdout.strip() not in ("", shell), timeout=30, message="a new process beating")
    assert not os.path.exists(f"/proc/{shell}"), "the hung process was killed"
    assert "failed its liveness probe 2 times" in daemon_log(runtime)


def test_without_liveness_probes_a_hung_container_is_left_alone(localpods_factory) -> None:
    """--no-liveness: the same hung container is never restarted (readiness still counts)."""
    runtime = localpods_factory(None, options=["--no-liveness"])
    liveness = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
    runtime.store().create(statefulset("calm", [container("main", "exec sleep infinity", livenessProbe=liveness)]))
    runtime.wait_ready(1, timeout=60, namespace=NAMESPACE, statefulset="calm")
    # Three periods of a failing liveness probe, which would have restarted it three times.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert restarts(runtime, "calm-0", "main") == 0
        time.sleep(0.2)


def test_readiness_waits_for_the_startup_probe(localpods_factory) -> None:
    """A container with a startup probe is not ready, whatever its readiness probe says, until the
    startup probe passes; a startup probe that keeps failing restarts it."""
    runtime = localpods_factory(None)
    started_when = {"exec": {"command": ["test", "-e", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 600}
    slow = container(
        "slow",
        "exec sleep infinity",
        startupProbe=started_when,
        readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    never = container("never", "exec sleep infinity", startupProbe={"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2})
    runtime.store().create(statefulset("slow", [slow], [{"name": "tmp", "emptyDir": {}}]))
    runtime.store().create(statefulset("never", [never]))
    eventually(lambda: restarts(runtime, "never-0", "never") >= 1, timeout=60, message="a container restarted by its failing startup probe")
    assert statuses(runtime, "never-0")["never"]["lastState"]["terminated"]["message"] == "startup probe failed"
    assert not ready(runtime, "slow-0") and statuses(runtime, "slow-0")["slow"]["started"] is False
    assert exec_in(runtime, "slow-0", "slow", "touch", "/tmp/started").returncode == 0
    eventually(lambda: ready(runtime, "slow-0"), timeout=30, message="ready once started")
    assert statuses(runtime, "slow-0")["slow"]["started"] is True and restarts(runtime, "slow-0", "slow") == 0


# -- images ---------------------------------------------------------------------------------------


@pytest.fixture
def stand_in_dir() -> Iterator[str]:
    """A directory of programs that the pods' user can run (pytest's tmp_path is root's alone)."""
    path = tempfile.mkdtemp(prefix="localpods-image-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def test_a_container_of_an_unmapped_image_is_refused_by_name_beside_a_mapped_one(localpods_factory, tmp_path, stand_in_dir: str) -> None:
    bin_dir = stand_in_dir
    with open(os.path.join(bin_dir, "whoami-image"), "w", encoding="utf-8") as handle:
        handle.write("#!/bin/sh\necho newer stand-in\nexec sleep infinity\n")
    os.chmod(os.path.join(bin_dir, "whoami-image"), 0o755)
    image_map = tmp_path / "images.yaml"
    image_map.write_text(f"example.org/tools:2.0:\n  path: [{bin_dir}]\n  entrypoint: [whoami-image]\n")
    runtime = localpods_factory(None, options=[f"--image-map={image_map}"])
    store = runtime.store()
    # The mapped tag runs its stand-in's entrypoint (no command given), found on the stand-in's PATH.
    store.create(statefulset("mapped", [{"name": "tools", "image": "example.org/tools:2.0@sha256:" + "0" * 64}]))
    store.create(statefulset("unmapped", [{"name": "tools", "image": "example.org/tools:3.0", "command": ["sleep", "infinity"]}]))
    runtime.wait_ready(1, timeout=60, namespace=NAMESPACE, statefulset="mapped")
    assert runtime.log("mapped-0", "tools", NAMESPACE).splitlines()[-1] == "newer stand-in"

    def refusal() -> dict:
        return (statuses(runtime, "unmapped-0").get("tools") or {}).get("state", {}).get("waiting", {}).get("reason") == "ErrImagePull" and statuses(
            runtime, "unmapped-0"
        )["tools"]

    refused = eventually(refusal, timeout=30, message="the unmapped image refused")
    assert 'no stand-in on this machine for image "example.org/tools:3.0"' in refused["state"]["waiting"]["message"]
    assert not ready(runtime, "unmapped-0")


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("postgres:15.14-alpine", ("postgres", "15.14-alpine")),
        ("docker.io/library/postgres:15.14@sha256:" + "a" * 64, ("postgres", "15.14")),
        ("registry.local:5000/team/postgres", ("registry.local:5000/team/postgres", "")),
        ("quay.io/prometheuscommunity/postgres-exporter:v0.15.0", ("quay.io/prometheuscommunity/postgres-exporter", "v0.15.0")),
    ],
)
def test_image_references_are_read_as_repository_and_tag(reference: str, expected: tuple[str, str]) -> None:
    assert parse_reference(reference) == expected


def test_the_default_map_runs_the_postgres_image_of_any_tag_on_debian_binaries() -> None:
    stand_in = ImageMap().resolve("postgres:15.14-alpine")
    assert stand_in.key == "postgres" and stand_in.path == ("/usr/lib/postgresql/15/bin",)
    assert stand_in.search_path().startswith("/usr/lib/postgresql/15/bin:")
    with pytest.raises(ImageMapError, match='image "nginx:1.27"'):
        ImageMap().resolve("nginx:1.27")


def test_a_tag_entry_wins_over_the_repository_entry(tmp_path) -> None:
    override = tmp_path / "newer.yaml"
    override.write_text("postgres:15.20:\n  path: [/opt/pg-15.20/bin]\n")
    images = ImageMap([str(override)])
    assert images.resolve("postgres:15.20").path == ("/opt/pg-15.20/bin",)
    assert images.resolve("postgres:15.18").key == "postgres"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("postgres:\n  path: relative/bin\n", "absolute directories"),
        ("postgres:\n  path: [bin]\n", "absolute directories"),
        ("postgres:\n  entrypoint: run\n", "entrypoint"),
        ("postgres:\n  env: {1BAD: x}\n", "env"),
        ("postgres:\n  image: other\n", "unknown fields"),
        ("- postgres\n", "a mapping"),
        ("postgres: [bin]\n", "not a mapping"),
    ],
)
def test_a_bad_image_map_is_refused(tmp_path, text: str, problem: str) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(ImageMapError, match=problem):
        ImageMap([str(path)])


def test_a_good_image_map_entry_is_taken_as_written(tmp_path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("example.org/x:\n  path: [/opt/x/bin]\n  entrypoint: [x, --serve]\n  env: {X_HOME: /opt/x}\n")
    assert ImageMap([str(path)]).resolve("example.org/x:9") == StandIn("example.org/x", ("/opt/x/bin",), ("x", "--serve"), {"X_HOME": "/opt/x"})


# -- ConfigMap volumes ------------------------------------------------------------------------------


def test_kubelet_like_refresh_delays_are_spread_seeded_and_within_the_range() -> None:
    delays = [kubelet_refresh_delay(0, f"ns/pod-{i}", 1) for i in range(200)]
    low, high = KUBELET_REFRESH_RANGE
    assert all(low <= delay <= high for delay in delays)
    assert max(delays) - min(delays) > (high - low) / 2, "spread over the range, not one period"
    assert delays == [kubelet_refresh_delay(0, f"ns/pod-{i}", 1) for i in range(200)], "the same seed draws the same delays"
    assert delays != [kubelet_refresh_delay(1, f"ns/pod-{i}", 1) for i in range(200)]


def test_a_held_pod_keeps_its_stale_config_view_while_the_others_refresh(localpods_factory) -> None:
    """--config-refresh=0.2: this test is about who refreshes, not when."""
    runtime = localpods_factory(None, options=["--config-refresh=0.2"])
    store = runtime.store()
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "view", "namespace": NAMESPACE}, "data": {"value": "old"}})
    reader = container("reader", "exec sleep infinity", volumeMounts=[{"name": "view", "mountPath": "/var/lib/postgresql/view"}])
    store.create(statefulset("view", [reader], [{"name": "view", "configMap": {"name": "view"}}], replicas=2))
    runtime.wait_ready(2, timeout=60, namespace=NAMESPACE, statefulset="view")
    runtime.cli("hold-config", "--namespace", NAMESPACE, "view-1")
    store.patch_merge("ConfigMap", NAMESPACE, "view", {"data": {"value": "new"}})

    def seen(pod: str) -> str:
        return exec_in(runtime, pod, "reader", "cat", "/var/lib/postgresql/view/value").stdout

    eventually(lambda: seen("view-0") == "new", timeout=30, message="view-0 refreshed")
    # Ten refresh periods: a pod that was not held would have refreshed by now.
    time.sleep(2)
    assert seen("view-1") == "old"
    runtime.cli("hold-config", "--namespace", NAMESPACE, "--release", "view-1")
    eventually(lambda: seen("view-1") == "new", timeout=30, message="view-1 refreshed once released")


def first_word_after(log: str, word: str) -> int:
    """The number a container printed after ``word`` in its first run's log."""
    for line in log.splitlines():
        if line.startswith(word + " "):
            return int(line.split()[1])
    raise AssertionError(f"no line {word} N in {log!r}")


def daemon_log(runtime: LocalPods) -> str:
    with open(os.path.join(runtime.state_dir, "daemon.log"), encoding="utf-8") as handle:
        return handle.read()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
