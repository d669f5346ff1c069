# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role against a live cluster: site.yml and destroy.yml with ``pg_cluster_target=existing``
through the local runtime's Kubernetes API, as ``make up-local`` runs them. The second apply changes
nothing; the record of the primary is written once (a switchover survives the next site.yml); check
mode changes nothing; ``absent`` keeps the data unless asked, then removes it too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_switchover import REPO, Pods  # noqa: E402

from tests.localpods.fixtures import LocalPods, _down_all, eventually  # noqa: E402

NAMESPACE = "postgres"


def ansible_playbook(playbook: str, kubeconfig: str, *extra: str) -> tuple[int, dict]:
    """The playbook's exit code and its recap (stats) for localhost; a failed run fails the test."""
    report = playbook_report(playbook, kubeconfig, *extra)
    return 0, report["stats"]["localhost"]


def playbook_report(playbook: str, kubeconfig: str, *extra: str) -> dict:
    """The ansible.posix.json report of a successful run; a failed run fails the test with its failed tasks."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook, "-e", "pg_cluster_target=existing"]
    argv += ["-e", f"pg_cluster_kubeconfig={kubeconfig}", "-e", f"pg_status_kubeconfig={kubeconfig}", "-e", f"pg_switchover_kubeconfig={kubeconfig}", *extra]
    completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stdout[-4000:] + completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    if completed.returncode != 0:
        failed = [
            task["task"]["name"] + ": " + json.dumps(host.get("msg"))
            for task in report["plays"][0]["tasks"]
            for host in task["hosts"].values()
            if host.get("failed")
        ]
        pytest.fail(f"{playbook} failed: {failed}")
    return report


def messages(report: dict, task_name: str) -> list[str]:
    """What the debug task ``task_name`` said, in order (a role's tasks are named ``role : task``)."""
    return [
        str(host.get("msg"))
        for play in report["plays"]
        for task in play["tasks"]
        if task["task"]["name"].rsplit(" : ", 1)[-1] == task_name
        for host in task["hosts"].values()
        if not host.get("skipped")
    ]


def versions(core: kubernetes.client.CoreV1Api, apps: kubernetes.client.AppsV1Api) -> dict[str, str]:
    found = {f"cm/{o.metadata.name}": o.metadata.resource_version for o in core.list_namespaced_config_map(NAMESPACE).items}
    found.update({f"svc/{o.metadata.name}": o.metadata.resource_version for o in core.list_namespaced_service(NAMESPACE).items})
    found.update({f"secret/{o.metadata.name}": o.metadata.resource_version for o in core.list_namespaced_secret(NAMESPACE).items})
    found.update({f"sts/{o.metadata.name}": o.metadata.resource_version for o in apps.list_namespaced_stateful_set(NAMESPACE).items})
    return found


@pytest.fixture(scope="module")
def empty_runtime():
    """An empty runtime whose home namespace is the role's, as make up-local starts it."""
    runtime = LocalPods.start(None, options=["--home-namespace=postgres"])
    try:
        yield runtime
    finally:
        _down_all([(runtime, set())])


@pytest.fixture(scope="module")
def deployed(empty_runtime):
    runtime: LocalPods = empty_runtime
    _code, stats = ansible_playbook("site.yml", runtime.kubeconfig)
    assert stats["failures"] == 0
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=runtime.kubeconfig, client_configuration=configuration)
    client = kubernetes.client.ApiClient(configuration)
    pods = Pods(runtime.runtime_dir)
    pods.wait_healthy("postgres-0")
    return runtime, kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client), pods


def test_the_second_apply_changes_nothing(deployed):
    runtime, core, apps, _pods = deployed
    before = versions(core, apps)
    _code, stats = ansible_playbook("site.yml", runtime.kubeconfig)
    assert stats["changed"] == 0, stats
    assert versions(core, apps) == before


def test_the_namespace_the_role_created_names_its_cluster_and_no_instance(deployed):
    _runtime, core, _apps, _pods = deployed
    metadata = core.read_namespace(NAMESPACE).metadata
    assert metadata.annotations["dbonk8s.io/clusters"] == "postgres"
    assert metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "app.kubernetes.io/instance" not in metadata.labels


def test_check_mode_against_the_live_cluster_changes_nothing(deployed):
    runtime, core, apps, _pods = deployed
    before = versions(core, apps)
    ansible_playbook("site.yml", runtime.kubeconfig, "--check", "--diff")
    assert versions(core, apps) == before


def test_the_record_is_written_once_so_a_switchover_survives_the_next_apply(deployed):
    runtime, core, _apps, pods = deployed
    ansible_playbook("playbooks/switchover.yml", runtime.kubeconfig, "-e", "candidate=postgres-1")
    pods.wait_healthy("postgres-1")
    ansible_playbook("site.yml", runtime.kubeconfig)
    assert core.read_namespaced_config_map("postgres-primary", NAMESPACE).data["primary"] == "postgres-1"
    assert core.read_namespaced_service("postgres-rw", NAMESPACE).spec.selector["statefulset.kubernetes.io/pod-name"] == "postgres-1"
    pods.wait_healthy("postgres-1")


def test_absent_keeps_the_data_unless_asked(deployed):
    runtime, core, apps, _pods = deployed
    ansible_playbook("playbooks/destroy.yml", runtime.kubeconfig)
    eventually(lambda: not apps.list_namespaced_stateful_set(NAMESPACE).items, timeout=120, message="the StatefulSet gone")
    eventually(lambda: not core.list_namespaced_pod(NAMESPACE).items, timeout=120, message="the pods gone")
    claims = {claim.metadata.name for claim in core.list_namespaced_persistent_volume_claim(NAMESPACE).items}
    assert {"pgdata-postgres-0", "pgdata-postgres-1", "pgdata-postgres-2"} <= claims
    assert core.read_namespaced_config_map("postgres-primary", NAMESPACE).data["primary"] == "postgres-1"
    ansible_playbook("playbooks/destroy.yml", runtime.kubeconfig, "-e", "pg_cluster_delete_volumes=true")

    def namespace_gone() -> bool:
        try:
            core.read_namespace(NAMESPACE)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(namespace_gone, timeout=120, message="the namespace and everything in it gone")
    assert not [d for d in os.listdir(os.path.join(runtime.runtime_dir, "volumes")) if d.startswith("pgdata-")]
