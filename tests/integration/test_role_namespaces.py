# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whose namespace it is, through the local runtime's Kubernetes API: a namespace that holds
another team's workload keeps it, its labels and its Pod Security level through deploys and
teardowns; two clusters share a namespace and the teardown of one leaves the other its data; the
namespace-only mode runs under the README's Role and asks for nothing cluster-scoped; a namespace
the role created lists its clusters and goes with the last one, once nothing else is in it."""

from __future__ import annotations

import os
import re
import sys

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_role_live import messages, playbook_report  # noqa: E402
from test_switchover import REPO  # noqa: E402

from tests.localpods.fixtures import LocalPods, _down_all, eventually  # noqa: E402

SHARED = "apps"
THIRD = "third"
OWNED = "owned"
DEPLOYER = "deployer"
OWNERS = "dbonk8s.io/clusters"
KEPT = "Say why the namespace was kept"
OURS = {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/managed-by": "dbonk8s.postgresql"}


def readme_role(readme: str = "README.md") -> dict:
    """The Role that the README says a namespace admin grants for the namespace-only mode."""
    with open(os.path.join(REPO, readme), encoding="utf-8") as handle:
        found = re.search(r"<!-- namespace-only-role -->\s*```yaml\n(.*?)```\s*<!-- /namespace-only-role -->", handle.read(), re.S)
    assert found, f"{readme} lists no Role for the namespace-only mode"
    return yaml.safe_load(found.group(1))


def test_both_readmes_list_the_same_role():
    assert readme_role("README.ja.md") == readme_role("README.md")


class Cluster:
    """The runtime's API as its administrator, and the role's playbooks run against it."""

    def __init__(self, runtime: LocalPods, manifest_root: str) -> None:
        self.runtime = runtime
        self.manifest_root = manifest_root
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=runtime.kubeconfig, client_configuration=configuration)
        api = kubernetes.client.ApiClient(configuration)
        self.core, self.apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(api)
        self.deployer_kubeconfig = ""

    def role(self, playbook: str, name: str, namespace: str, *extra: str, kubeconfig: str | None = None) -> dict:
        """site.yml or destroy.yml for cluster ``name``; its manifests in a directory of their own."""
        manifests = os.path.join(self.manifest_root, f"{namespace}-{name}")
        args = ["-e", f"pg_cluster_namespace={namespace}", "-e", f"pg_cluster_name={name}", "-e", f"pg_cluster_manifest_dir={manifests}", *extra]
        return playbook_report(playbook, kubeconfig or self.runtime.kubeconfig, *args)

    def psql(self, namespace: str, pod: str, sql: str) -> str:
        argv = ["exec", "--namespace", namespace, pod, "--", "psql", "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-d", "postgres", "-c", sql]
        return self.runtime.cli(*argv).stdout.strip()

    def wait_streaming(self, namespace: str, name: str, members: int) -> None:
        self.runtime.wait_ready(members, timeout=240, namespace=namespace, statefulset=name)
        if members > 1:
            streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            eventually(lambda: self.psql(namespace, f"{name}-0", streaming) == str(members - 1), timeout=120, message=f"{name}'s standbys streaming")

    def namespace(self, name: str):
        try:
            return self.core.read_namespace(name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def metadata(self, namespace: str) -> tuple[dict, dict]:
        found = self.core.read_namespace(namespace).metadata
        return dict(found.labels or {}), dict(found.annotations or {})

    def versions(self, namespace: str, prefix: str = "") -> dict[str, str]:
        """kind/name -> resourceVersion of the namespace's objects whose names start with ``prefix``."""
        found: dict[str, str] = {}
        for kind, items in (
            ("cm", self.core.list_namespaced_config_map(namespace).items),
            ("secret", self.core.list_namespaced_secret(namespace).items),
            ("svc", self.core.list_namespaced_service(namespace).items),
            ("sa", self.core.list_namespaced_service_account(namespace).items),
            ("pvc", self.core.list_namespaced_persistent_volume_claim(namespace).items),
            ("sts", self.apps.list_namespaced_stateful_set(namespace).items),
        ):
            found.update({f"{kind}/{o.metadata.name}": o.metadata.resource_version for o in items if o.metadata.name.startswith(prefix)})
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    runtime = LocalPods.start(None, options=["--home-namespace=postgres"])
    try:
        yield Cluster(runtime, str(tmp_path_factory.mktemp("manifests")))
    finally:
        _down_all([(runtime, set())])


def labelled(name: str, labels: dict | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}}


@pytest.fixture(scope="module")
def shared(cluster: Cluster, tmp_path_factory):
    """Namespace ``apps`` with another team's workload (one object carrying our managed-by label), a
    namespace ``third`` carrying our labels with objects labelled like the clusters to be deployed,
    and the README's Role bound to a ServiceAccount of ``apps``."""
    core = cluster.core
    core.create_namespace(
        {
            "metadata": {
                "name": SHARED,
                "labels": {"team": "web", "pod-security.kubernetes.io/enforce": "baseline"},
                "annotations": {"owner": "web-team"},
            }
        }
    )
    core.create_namespaced_config_map(SHARED, {**labelled("web-config", {"app.kubernetes.io/managed-by": "dbonk8s.postgresql"}), "data": {"a": "1"}})
    core.create_namespaced_secret(SHARED, {**labelled("web-secret"), "stringData": {"token": "x"}})
    core.create_namespaced_service_account(SHARED, labelled("web"))
    core.create_namespaced_service(SHARED, {**labelled("web"), "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    core.create_namespace(labelled(THIRD, {**OURS, "app.kubernetes.io/instance": "pg-a"}))
    for name in ("pg-a", "pg-b"):
        core.create_namespaced_config_map(THIRD, {**labelled(f"{name}-config", {**OURS, "app.kubernetes.io/instance": name}), "data": {"a": "1"}})
    core.create_persistent_volume(
        {
            **labelled("third-pg-b-wal-archive", {**OURS, "app.kubernetes.io/instance": "pg-b"}),
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "claimRef": {"namespace": THIRD, "name": "pg-b-wal-archive"},
                "hostPath": {"path": "/nonexistent"},
            },
        }
    )
    role = readme_role()
    role["metadata"]["namespace"] = SHARED
    cluster.rbac.create_namespaced_role(SHARED, role)
    core.create_namespaced_service_account(SHARED, labelled(DEPLOYER))
    cluster.rbac.create_namespaced_role_binding(
        SHARED,
        {
            "metadata": {"name": DEPLOYER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
            "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER, "namespace": SHARED}],
        },
    )
    token = core.create_namespaced_service_account_token(DEPLOYER, SHARED, {"spec": {"expirationSeconds": 7200}}).status.token
    with open(cluster.runtime.kubeconfig, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    config["users"][0]["user"] = {"token": token}
    path = tmp_path_factory.mktemp("deployer") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    cluster.deployer_kubeconfig = str(path)
    return {
        "metadata": cluster.metadata(SHARED),
        "workload": cluster.versions(SHARED, "web"),
        "third": cluster.versions(THIRD),
        "third_metadata": cluster.metadata(THIRD),
    }


NAMESPACE_ONLY = ("-e", "pg_cluster_namespace_create=false", "-e", "pg_cluster_archive_mode=pvc")


def test_two_clusters_share_a_namespace_that_holds_another_workload(cluster: Cluster, shared: dict):
    # One in the namespace-only mode under the README's Role, one as an administrator in the default mode.
    cluster.role("site.yml", "pg-a", SHARED, "-e", "pg_cluster_members=2", *NAMESPACE_ONLY, kubeconfig=cluster.deployer_kubeconfig)
    cluster.role("site.yml", "pg-b", SHARED, "-e", "pg_cluster_members=2", "-e", "pg_cluster_archive_mode=pvc")
    cluster.wait_streaming(SHARED, "pg-a", 2)
    cluster.wait_streaming(SHARED, "pg-b", 2)
    assert cluster.metadata(SHARED) == shared["metadata"]
    assert cluster.versions(SHARED, "web") == shared["workload"]
    # Each cluster's -rw Service selects its own primary only.
    for name in ("pg-a", "pg-b"):
        selector = cluster.core.read_namespaced_service(f"{name}-rw", SHARED).spec.selector
        assert selector["app.kubernetes.io/instance"] == name and selector["statefulset.kubernetes.io/pod-name"] == f"{name}-0"


def test_destroying_one_cluster_with_its_volumes_leaves_the_other_its_data(cluster: Cluster, shared: dict):
    cluster.psql(SHARED, "pg-b-0", "CREATE TABLE kept (id int); INSERT INTO kept VALUES (42)")
    before = cluster.versions(SHARED, "pg-b")
    report = cluster.role(
        "playbooks/destroy.yml", "pg-a", SHARED, "-e", "pg_cluster_delete_volumes=true", *NAMESPACE_ONLY, kubeconfig=cluster.deployer_kubeconfig
    )
    # The namespace-only mode does not even look at the Namespace.
    assert messages(report, KEPT) == []
    assert cluster.versions(SHARED, "pg-a") == {}
    eventually(lambda: not cluster.runtime.pods(SHARED, "pg-a"), timeout=120, message="pg-a's pods gone")
    assert cluster.versions(SHARED, "pg-b") == before
    assert cluster.psql(SHARED, "pg-b-0", "SELECT id FROM kept") == "42"
    cluster.wait_streaming(SHARED, "pg-b", 2)
    assert cluster.metadata(SHARED) == shared["metadata"]
    assert cluster.versions(SHARED, "web") == shared["workload"]
    assert cluster.versions(THIRD) == shared["third"]


def test_the_namespace_only_mode_asks_for_nothing_cluster_scoped(cluster: Cluster, shared: dict):
    assert readme_role()["kind"] == "Role"
    user = f"system:serviceaccount:{SHARED}:{DEPLOYER}"
    with open(os.path.join(cluster.runtime.runtime_dir, "apiserver.log"), encoding="utf-8") as handle:
        requests = [line.split()[3:] for line in handle if line.split()[2:3] == [user]]
    assert len(requests) > 50, "the deployer's requests are not in the log"
    namespaced = re.compile(rf"^/(api/v1|apis/[^/]+/[^/]+)/namespaces/{SHARED}/[a-z]+(/|\?|$)")
    discovery = re.compile(r"^(/api(/v1)?|/apis(/[^/?]+){0,2}|/version|/openapi/.*)/?(\?.*)?$")
    asked = [f"{method} {path}" for method, path, _code in requests if not namespaced.match(path) and not discovery.match(path)]
    assert asked == []
    # Discovery lists resource types, never objects: /api/v1 and /apis/<group>/<version> name no namespace.
    assert not [path for _method, path, _code in requests if discovery.match(path) and "namespaces" in path]
    refused = [f"{method} {path} {code}" for method, path, code in requests if code == "403"]
    assert refused == []


def test_the_last_cluster_gone_keeps_a_namespace_the_role_did_not_create(cluster: Cluster, shared: dict):
    report = cluster.role("playbooks/destroy.yml", "pg-b", SHARED, "-e", "pg_cluster_delete_volumes=true", "-e", "pg_cluster_archive_mode=pvc")
    assert messages(report, KEPT) == [f"Namespace {SHARED} was kept: the role did not create it (it has no {OWNERS} annotation)."]
    assert cluster.versions(SHARED, "pg-") == {}
    assert cluster.metadata(SHARED) == shared["metadata"]
    assert cluster.versions(SHARED, "web") == shared["workload"]
    # Labelled like pg-b's archive volume, but bound to a claim of another namespace.
    assert cluster.core.read_persistent_volume("third-pg-b-wal-archive").metadata.labels["app.kubernetes.io/instance"] == "pg-b"
    assert cluster.versions(THIRD) == shared["third"] and cluster.metadata(THIRD) == shared["third_metadata"]


def test_a_namespace_the_role_created_lists_its_clusters_and_goes_with_the_last(cluster: Cluster):
    single = ("-e", "pg_cluster_members=1")
    report = cluster.role("site.yml", "pg-c", OWNED, *single, "--check")
    assert "does not exist yet" in " ".join(messages(report, "Report what check mode cannot ask a namespace that does not exist yet"))
    assert cluster.namespace(OWNED) is None

    cluster.role("site.yml", "pg-c", OWNED, *single)
    cluster.role("site.yml", "pg-d", OWNED, *single)
    labels, annotations = cluster.metadata(OWNED)
    assert annotations[OWNERS] == "pg-c,pg-d"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted" and "app.kubernetes.io/instance" not in labels
    cluster.wait_streaming(OWNED, "pg-d", 1)
    cluster.core.create_namespaced_config_map(OWNED, {**labelled("notes"), "data": {"a": "1"}})

    report = cluster.role("playbooks/destroy.yml", "pg-c", OWNED, "-e", "pg_cluster_delete_volumes=true")
    assert messages(report, KEPT) == [f"Namespace {OWNED} was kept: it holds the clusters pg-d."]
    assert cluster.metadata(OWNED)[1][OWNERS] == "pg-d"
    assert cluster.psql(OWNED, "pg-d-0", "SELECT 1") == "1"

    report = cluster.role("playbooks/destroy.yml", "pg-d", OWNED, "-e", "pg_cluster_delete_volumes=true")
    assert messages(report, KEPT) == [f"Namespace {OWNED} was kept: it holds objects the role did not create: ConfigMap/notes."]
    assert cluster.metadata(OWNED)[1][OWNERS] == ""
    # A cluster deployed into it again is listed again, and its teardown, with nothing else left, removes the namespace.
    cluster.core.delete_namespaced_config_map("notes", OWNED)
    cluster.role("site.yml", "pg-d", OWNED, *single)
    assert cluster.metadata(OWNED)[1][OWNERS] == "pg-d"
    report = cluster.role("playbooks/destroy.yml", "pg-d", OWNED, "-e", "pg_cluster_delete_volumes=true")
    assert messages(report, KEPT) == []
    eventually(lambda: cluster.namespace(OWNED) is None, timeout=120, message="the namespace gone")
    assert cluster.namespace(THIRD) is not None and cluster.namespace(SHARED) is not None


def test_a_namespace_that_existed_is_labelled_only_when_the_user_manages_it(cluster: Cluster):
    cluster.core.create_namespace(labelled("managed", {"team": "db"}))
    cluster.role("site.yml", "pg-e", "managed", "-e", "pg_cluster_members=1", "-e", "pg_cluster_namespace_manage=true")
    labels, annotations = cluster.metadata("managed")
    assert labels["team"] == "db" and labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Labelled, not taken over: it is still not the role's to delete.
    assert OWNERS not in annotations
    report = cluster.role("playbooks/destroy.yml", "pg-e", "managed", "-e", "pg_cluster_delete_volumes=true")
    assert messages(report, KEPT) == [f"Namespace managed was kept: the role did not create it (it has no {OWNERS} annotation)."]
    assert cluster.namespace("managed") is not None
