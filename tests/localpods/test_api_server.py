"""The runtime's Kubernetes API server end to end: unmodified kubectl and the ``kubernetes`` client
against a running cluster, and the API behaviours that clients rely on (409s, exec exit codes, RBAC,
evictions under the PodDisruptionBudget, watches, a deleted pod made again by its StatefulSet)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from tests.localpods.fixtures import LocalPods, eventually

NAMESPACE = "postgres"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")


@pytest.fixture(scope="module")
def cluster(localpods_cluster: LocalPods) -> LocalPods:
    localpods_cluster.cli("wait", "--timeout", "180")
    return localpods_cluster


def client_for(kubeconfig: str) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


@pytest.fixture(scope="module")
def core(cluster: LocalPods) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(client_for(cluster.kubeconfig))


def kubectl(cluster: LocalPods, home: str, *args: str, stdin: str | None = None, kubeconfig: str | None = None) -> subprocess.CompletedProcess:
    # Its own HOME: kubectl caches discovery under ~/.kube/cache.
    env = dict(os.environ, HOME=home, KUBECONFIG=kubeconfig or cluster.kubeconfig)
    return subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False)


def resource_versions(core: kubernetes.client.CoreV1Api, apps: kubernetes.client.AppsV1Api) -> dict[str, str]:
    versions = {}
    for kind, items in (
        ("configmap", core.list_namespaced_config_map(NAMESPACE).items),
        ("service", core.list_namespaced_service(NAMESPACE).items),
        ("secret", core.list_namespaced_secret(NAMESPACE).items),
        ("statefulset", apps.list_namespaced_stateful_set(NAMESPACE).items),
    ):
        for item in items:
            versions[f"{kind}/{item.metadata.name}"] = item.metadata.resource_version
    return versions


@needs_kubectl
def test_kubectl_get_pods_lists_every_member_ready(cluster, tmp_path):
    result = kubectl(cluster, str(tmp_path), "-n", NAMESPACE, "get", "pods")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert sorted(rows) == ["postgres-0", "postgres-1", "postgres-2"]
    assert all(row[1] == "1/1" and row[2] == "Running" for row in rows.values()), result.stdout


@needs_kubectl
def test_kubectl_get_configmap_as_yaml_is_the_stored_object(cluster, core, tmp_path):
    result = kubectl(cluster, str(tmp_path), "-n", NAMESPACE, "get", "cm", "postgres-config", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    stored = core.read_namespaced_config_map("postgres-config", NAMESPACE)
    assert shown["data"] == stored.data
    assert shown["metadata"]["resourceVersion"] == stored.metadata.resource_version


@needs_kubectl
def test_kubectl_exec_passes_stdin_and_the_exit_code(cluster, tmp_path):
    text = "line one\nline two\n" * 1000
    result = kubectl(cluster, str(tmp_path), "-n", NAMESPACE, "exec", "-i", "postgres-1", "-c", "postgres", "--", "sh", "-c", "cat; exit 3", stdin=text)
    assert result.returncode == 3, result.stderr
    assert result.stdout == text


@needs_kubectl
def test_kubectl_logs_shows_the_container_log(cluster, tmp_path):
    result = kubectl(cluster, str(tmp_path), "-n", NAMESPACE, "logs", "postgres-0", "-c", "postgres")
    assert result.returncode == 0, result.stderr
    assert "database system is ready to accept connections" in result.stdout


@needs_kubectl
def test_kubectl_server_side_apply_twice_changes_nothing_the_second_time(cluster, core, localpods_manifests, tmp_path):
    apps = kubernetes.client.AppsV1Api(core.api_client)
    first = kubectl(cluster, str(tmp_path), "apply", "--server-side", "-f", localpods_manifests)
    assert first.returncode == 0, first.stderr
    before = resource_versions(core, apps)
    second = kubectl(cluster, str(tmp_path), "apply", "--server-side", "-f", localpods_manifests)
    assert second.returncode == 0, second.stderr
    assert len(second.stdout.splitlines()) >= 10 and all(line.endswith("serverside-applied") for line in second.stdout.splitlines()), second.stdout
    assert resource_versions(core, apps) == before


def test_replace_with_a_stale_resource_version_is_a_409(cluster, core):
    name = "stale-version"
    created = core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": name}, "data": {"a": "1"}})
    try:
        core.patch_namespaced_config_map(name, NAMESPACE, {"data": {"a": "2"}})
        created.data = {"a": "3"}
        with pytest.raises(ApiException) as refused:
            core.replace_namespaced_config_map(name, NAMESPACE, created)
        assert refused.value.status == 409
        assert json.loads(refused.value.body)["reason"] == "Conflict"
        assert core.read_namespaced_config_map(name, NAMESPACE).data == {"a": "2"}
    finally:
        core.delete_namespaced_config_map(name, NAMESPACE)


def apply_configmap(core: kubernetes.client.CoreV1Api, name: str, data: dict, manager: str, force: bool = False) -> dict:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}, "data": data}
    response = core.patch_namespaced_config_map(
        name, NAMESPACE, body, field_manager=manager, force=force, _content_type="application/apply-patch+yaml", _preload_content=False
    )
    return json.loads(response.data)


def test_server_side_apply_conflict_names_the_other_manager_and_force_takes_the_field(cluster, core):
    name = "two-managers"
    apply_configmap(core, name, {"owner": "alpha"}, "alpha")
    try:
        with pytest.raises(ApiException) as refused:
            apply_configmap(core, name, {"owner": "beta"}, "beta")
        assert refused.value.status == 409
        body = json.loads(refused.value.body)
        assert 'conflict with "alpha"' in body["message"] and ".data.owner" in body["message"], body
        assert core.read_namespaced_config_map(name, NAMESPACE).data == {"owner": "alpha"}
        forced = apply_configmap(core, name, {"owner": "beta"}, "beta", force=True)
        assert forced["data"] == {"owner": "beta"}
        assert [entry["manager"] for entry in forced["metadata"]["managedFields"]] == ["beta"]
    finally:
        core.delete_namespaced_config_map(name, NAMESPACE)


def test_exec_returns_the_command_exit_code_and_its_output(cluster, core):
    session = stream(
        core.connect_get_namespaced_pod_exec,
        "postgres-2",
        NAMESPACE,
        container="postgres",
        command=["sh", "-c", "echo out; echo err >&2; exit 7"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        _preload_content=False,
    )
    session.run_forever(timeout=30)
    assert session.read_stdout() == "out\n"
    assert session.read_stderr() == "err\n"
    assert session.returncode == 7


def test_exec_in_an_unknown_container_is_refused_by_name(cluster, core):
    with pytest.raises(ApiException) as refused:
        stream(core.connect_get_namespaced_pod_exec, "postgres-2", NAMESPACE, container="nope", command=["true"], stdout=True, stderr=True)
    assert "container nope is not valid for pod postgres-2" in str(refused.value)


def test_a_watch_reports_a_change_after_its_resource_version(cluster, core):
    name = "watched"
    created = core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": name}, "data": {"a": "1"}})
    try:
        core.patch_namespaced_config_map(name, NAMESPACE, {"data": {"a": "2"}})
        watch = kubernetes.watch.Watch()
        events = []
        for event in watch.stream(
            core.list_namespaced_config_map,
            NAMESPACE,
            resource_version=created.metadata.resource_version,
            field_selector=f"metadata.name={name}",
            timeout_seconds=5,
        ):
            events.append((event["type"], event["object"].data))
            watch.stop()
        assert events == [("MODIFIED", {"a": "2"})]
    finally:
        core.delete_namespaced_config_map(name, NAMESPACE)


def test_bad_credentials_are_a_401(cluster):
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=cluster.kubeconfig, client_configuration=configuration)
    configuration.cert_file = configuration.key_file = None
    configuration.api_key = {"authorization": "Bearer not-a-token"}
    with pytest.raises(ApiException) as refused:
        kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration)).list_namespaced_pod(NAMESPACE)
    assert refused.value.status == 401


def test_a_role_grants_exactly_its_verbs_to_a_service_account_token(cluster, core, tmp_path):
    rbac_api = kubernetes.client.RbacAuthorizationV1Api(core.api_client)
    core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "reader"}})
    rbac_api.create_namespaced_role(
        NAMESPACE, {"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list"]}]}
    )
    rbac_api.create_namespaced_role_binding(
        NAMESPACE,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NAMESPACE}],
        },
    )
    try:
        token = core.create_namespaced_service_account_token("reader", NAMESPACE, {"spec": {"expirationSeconds": 600}}).status.token
        kubeconfig = yaml.safe_load(open(cluster.kubeconfig, encoding="utf-8"))
        kubeconfig["users"][0]["user"] = {"token": token}
        path = tmp_path / "reader.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        reader = kubernetes.client.CoreV1Api(client_for(str(path)))
        assert len(reader.list_namespaced_pod(NAMESPACE).items) == 3
        assert reader.read_namespaced_service("postgres-rw", NAMESPACE).metadata.name == "postgres-rw"
        with pytest.raises(ApiException) as refused:
            reader.patch_namespaced_service("postgres-rw", NAMESPACE, {"metadata": {"labels": {"x": "y"}}})
        assert refused.value.status == 403
        assert json.loads(refused.value.body)["message"] == (
            'services "postgres-rw" is forbidden: User "system:serviceaccount:postgres:reader" '
            'cannot patch resource "services" in API group "" in the namespace "postgres"'
        )
        with pytest.raises(ApiException) as refused:
            reader.list_namespaced_config_map(NAMESPACE)
        assert refused.value.status == 403
        review = kubernetes.client.AuthorizationV1Api(reader.api_client).create_self_subject_access_review(
            {"spec": {"resourceAttributes": {"namespace": NAMESPACE, "verb": "patch", "resource": "services"}}}
        )
        assert review.status.allowed is False
    finally:
        rbac_api.delete_namespaced_role_binding("reader", NAMESPACE)
        rbac_api.delete_namespaced_role("reader", NAMESPACE)
        core.delete_namespaced_service_account("reader", NAMESPACE)


def pod_ready(core: kubernetes.client.CoreV1Api, name: str, not_uid: str | None = None) -> bool:
    try:
        pod = core.read_namespaced_pod(name, NAMESPACE)
    except ApiException:
        return False
    if not_uid and pod.metadata.uid == not_uid:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_a_deleted_pod_is_made_again_by_its_statefulset(cluster, core):
    old = core.read_namespaced_pod("postgres-2", NAMESPACE).metadata.uid
    core.delete_namespaced_pod("postgres-2", NAMESPACE)
    eventually(lambda: pod_ready(core, "postgres-2", not_uid=old), timeout=120, message="postgres-2 made again and ready")


def test_an_eviction_is_refused_while_the_budget_has_no_disruption_left(cluster, core):
    for name in ("postgres-0", "postgres-1", "postgres-2"):
        eventually(lambda name=name: pod_ready(core, name), timeout=120, message=f"{name} ready")
    first = core.read_namespaced_pod("postgres-2", NAMESPACE).metadata.uid
    core.create_namespaced_pod_eviction("postgres-2", NAMESPACE, {"metadata": {"name": "postgres-2", "namespace": NAMESPACE}})
    # maxUnavailable 1 is used up until postgres-2 is back.
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction("postgres-1", NAMESPACE, {"metadata": {"name": "postgres-1", "namespace": NAMESPACE}})
    assert refused.value.status == 429
    assert "disruption budget" in json.loads(refused.value.body)["message"]
    eventually(lambda: pod_ready(core, "postgres-2", not_uid=first), timeout=120, message="postgres-2 back")
    assert pod_ready(core, "postgres-1")
