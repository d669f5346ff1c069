# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kubernetes backend with the real ``kubernetes`` client against the fake API server."""

from __future__ import annotations

import socket
import threading

import pytest
from fake_kube_api import ExecScript, FakeKubeApi, seed_cluster

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ApiUnavailable,
    AuthError,
    ClusterError,
    Conflict,
    ExecLost,
    ExecTimeout,
    NotFound,
    PodUnavailable,
    StatefulSetMembers,
    StdinLine,
    backend_from_params,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._kube_backend import KubernetesBackend, build_configuration


@pytest.fixture
def api(tmp_path):
    server = FakeKubeApi(str(tmp_path / "api")).start()
    seed_cluster(server.store)
    yield server
    server.stop()


def backend_for(api: FakeKubeApi, token: str = "good-token", namespace: str = "postgres") -> KubernetesBackend:
    return backend_from_params({"host": api.url, "api_key": token, "namespace": namespace})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_member_pods_via_statefulset_selector(api):
    # A pod sharing the labels but not named <statefulset>-<n> is not a member.
    labels = api.store.get("StatefulSet", "postgres", "postgres")["spec"]["selector"]["matchLabels"]
    intruder = {"name": "postgres-backup", "namespace": "postgres", "labels": labels}
    api.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": intruder, "status": {"phase": "Running"}})
    pods = backend_for(api).member_pods(StatefulSetMembers(statefulset="postgres"))
    assert [pod["metadata"]["name"] for pod in pods] == ["postgres-0", "postgres-1", "postgres-2"]
    assert pods[0]["status"]["podIP"] == "10.244.0.10"


def test_member_pods_by_label_selector(api):
    pods = backend_for(api).member_pods(StatefulSetMembers(label_selector={"statefulset.kubernetes.io/pod-name": "postgres-1"}))
    assert [pod["metadata"]["name"] for pod in pods] == ["postgres-1"]


def test_unknown_statefulset_and_namespace(api):
    with pytest.raises(NotFound, match="StatefulSet nope not found in namespace postgres"):
        backend_for(api).member_pods(StatefulSetMembers(statefulset="nope"))
    with pytest.raises(NotFound, match="namespace elsewhere not found"):
        backend_for(api, namespace="elsewhere").member_pods(StatefulSetMembers(statefulset="postgres"))


def test_forbidden_namespace_read_is_not_fatal(api):
    api.forbidden_kinds.add("Namespace")
    with pytest.raises(NotFound, match="StatefulSet nope not found"):
        backend_for(api).member_pods(StatefulSetMembers(statefulset="nope"))


def test_no_pods(api):
    with pytest.raises(NotFound, match="no pods found for pods matching app=nothing"):
        backend_for(api).member_pods(StatefulSetMembers(label_selector={"app": "nothing"}))


def test_wrong_credentials(api):
    with pytest.raises(AuthError, match="rejected the credentials"):
        backend_for(api, token="wrong").member_pods(StatefulSetMembers(statefulset="postgres"))


def test_forbidden_is_an_auth_error(api):
    api.forbidden_kinds.add("StatefulSet")
    with pytest.raises(AuthError, match="403 Forbidden"):
        backend_for(api).get_statefulset("postgres")


def test_unreachable_api():
    backend = backend_from_params({"host": f"http://127.0.0.1:{closed_port()}", "api_key": "x", "namespace": "postgres"})
    with pytest.raises(ApiUnavailable, match="cannot reach the Kubernetes API at http://127.0.0.1"):
        backend.list_pods(None)


def test_missing_kubeconfig(tmp_path):
    with pytest.raises(ApiUnavailable, match="cannot load the Kubernetes client configuration from .*missing"):
        backend_from_params({"kubeconfig": str(tmp_path / "missing"), "namespace": "postgres"})


def test_kubeconfig_context_and_overrides(tmp_path, api):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "{api.url}"}}
- name: other
  cluster: {{server: "http://127.0.0.1:1"}}
users:
- name: tester
  user: {{token: good-token}}
contexts:
- name: fake
  context: {{cluster: fake, user: tester, namespace: postgres}}
- name: other
  context: {{cluster: other, user: tester}}
current-context: other
"""
    )
    configuration = build_configuration({"kubeconfig": str(kubeconfig), "context": "fake", "validate_certs": False, "proxy": None})
    assert configuration.host == api.url
    assert configuration.verify_ssl is False
    backend = KubernetesBackend(configuration, namespace="postgres")
    assert backend.get_configmap("postgres-primary")["data"]["primary"] == "postgres-0"


def test_configmap_optimistic_concurrency(api):
    backend = backend_for(api)
    record = backend.get_configmap("postgres-primary")
    updated = backend.replace_configmap(dict(record, data={"primary": "postgres-1", "epoch": "2"}))
    assert int(updated["metadata"]["resourceVersion"]) > int(record["metadata"]["resourceVersion"])
    with pytest.raises(Conflict):
        backend.replace_configmap(dict(record, data={"primary": "postgres-2", "epoch": "2"}))
    with pytest.raises(Conflict):
        backend.patch_configmap("postgres-primary", {"metadata": {"resourceVersion": record["metadata"]["resourceVersion"]}, "data": {"epoch": "9"}})
    assert backend.get_configmap("postgres-primary")["data"] == {"primary": "postgres-1", "epoch": "2"}


def test_patches_are_merge_patches(api):
    backend = backend_for(api)
    backend.patch_service("postgres-rw", {"spec": {"selector": {"statefulset.kubernetes.io/pod-name": "postgres-1"}}})
    backend.patch_pod_labels("postgres-1", {"dbonk8s.io/role": "replica"})
    backend.patch_pod_labels("postgres-1", {"dbonk8s.io/role": None})
    assert backend.get_service("postgres-rw")["spec"]["selector"] == {"statefulset.kubernetes.io/pod-name": "postgres-1"}
    assert "dbonk8s.io/role" not in api.store.get("Pod", "postgres", "postgres-1")["metadata"]["labels"]
    assert {content for method, _path, content in api.requests if method == "PATCH"} == {"application/merge-patch+json"}


# -- exec over the websocket ----------------------------------------------------------------


def test_exec_success_with_argv_list(api):
    api.exec_handler = lambda pod, container, argv: ExecScript(stdout="out", stderr="err", rc=0)
    result = backend_for(api).exec("postgres-0", ["psql", "-c", "SELECT 'a b'"], timeout=5)
    assert (result.rc, result.stdout, result.stderr) == (0, "out", "err")
    assert api.exec_calls == [("postgres-0", "postgres", ["psql", "-c", "SELECT 'a b'"])]


def test_exec_stdin_line_said_later_reaches_channel_0(api):
    api.exec_handler = lambda pod, container, argv: ExecScript(read_stdin=True, rc=0)
    line = StdinLine()
    threading.Timer(0.2, line.say, args=("go",)).start()
    result = backend_for(api).exec("postgres-0", ["/etc/postgresql/scripts/ctl.sh", "promote", "2", "60", "90"], timeout=5, stdin=line)
    assert (result.rc, result.stdout) == (0, "stdin:go\n")
    assert api.exec_stdin_flags == ["true"]


def test_exec_without_stdin_asks_for_none(api):
    api.exec_handler = lambda pod, container, argv: ExecScript(rc=0)
    backend_for(api).exec("postgres-0", ["true"], timeout=5)
    assert api.exec_stdin_flags == ["false"]


def test_exec_non_zero_exit_code(api):
    api.exec_handler = lambda pod, container, argv: ExecScript(stderr="psql: error: connection failed\n", rc=2)
    result = backend_for(api).exec("postgres-1", ["psql"], timeout=5)
    assert result.rc == 2
    assert result.stderr.startswith("psql: error")


def test_exec_channel_closed_without_status(api):
    api.exec_handler = lambda pod, container, argv: ExecScript(stdout="partial", rc=None)
    with pytest.raises(ExecLost, match="without an exit status"):
        backend_for(api).exec("postgres-1", ["psql"], timeout=5)


def test_exec_timeout(api):
    api.exec_handler = lambda pod, container, argv: ExecScript(rc=0, delay=3)
    with pytest.raises(ExecTimeout, match="within 1s"):
        backend_for(api).exec("postgres-1", ["sleep", "10"], timeout=1)


def test_exec_in_pod_not_running(api):
    api.store.patch_merge("Pod", "postgres", "postgres-2", {"status": {"phase": "Pending"}})
    with pytest.raises(PodUnavailable, match="container not found"):
        backend_for(api).exec("postgres-2", ["psql"], timeout=5)


def test_exec_failure_without_exit_code(api):
    api.exec_handler = lambda pod, container, argv: ExecScript(
        status={"metadata": {}, "status": "Failure", "reason": "InternalError", "message": 'exec: "psql": executable file not found in $PATH'}
    )
    with pytest.raises(ClusterError, match="executable file not found"):
        backend_for(api).exec("postgres-0", ["psql"], timeout=5)


def test_exec_with_wrong_credentials(api):
    with pytest.raises(AuthError):
        backend_for(api, token="wrong").exec("postgres-0", ["psql"], timeout=5)


def test_exec_forbidden(api):
    api.forbidden_kinds.add("Exec")
    with pytest.raises(AuthError, match="needs create on pods/exec") as error:
        backend_for(api).exec("postgres-0", ["psql"], timeout=5)
    assert error.value.status == 403


def test_exec_in_a_deleted_pod(api):
    api.store.delete("Pod", "postgres", "postgres-1")
    with pytest.raises(PodUnavailable) as error:
        backend_for(api).exec("postgres-1", ["psql"], timeout=5)
    assert error.value.status == 404
