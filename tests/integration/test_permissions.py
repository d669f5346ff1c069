# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules under ServiceAccounts whose Roles grant exactly the permissions their documentation
names (``_permissions.READ`` and ``OPERATE``), through the local runtime's API server: what the
docs list is enough, and a missing verb is refused before any change, by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import kubernetes
import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_switchover import REPO, Pods, playbook  # noqa: E402

if os.path.join(REPO, ".collections") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, ".collections"))

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _permissions  # noqa: E402

NAMESPACE = "postgres"


@pytest.fixture(scope="module")
def cluster(local_cluster):
    pods = Pods(local_cluster.runtime_dir)
    pods.wait_healthy("postgres-0")
    return local_cluster, pods


def admin(cluster) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=cluster.kubeconfig, client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


def rules(permissions: tuple[_permissions.Permission, ...]) -> list[dict]:
    return [{"apiGroups": [p.group], "resources": [f"{p.resource}/{p.subresource}" if p.subresource else p.resource], "verbs": [p.verb]} for p in permissions]


def service_account_kubeconfig(cluster, tmp_path, name: str, permissions: tuple[_permissions.Permission, ...]) -> str:
    """A ServiceAccount bound to a Role of exactly ``permissions``, and a kubeconfig with its token."""
    api = admin(cluster)
    core, rbac = kubernetes.client.CoreV1Api(api), kubernetes.client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": name}})
    rbac.create_namespaced_role(NAMESPACE, {"metadata": {"name": name}, "rules": rules(permissions)})
    rbac.create_namespaced_role_binding(
        NAMESPACE,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        },
    )
    token = core.create_namespaced_service_account_token(name, NAMESPACE, {"spec": {"expirationSeconds": 3600}}).status.token
    with open(cluster.kubeconfig, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    config["users"][0]["user"] = {"token": token}
    path = tmp_path / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run(tmp_path, module: str, kubeconfig: str, check: bool = False, **args) -> dict:
    argv, result_file, env = playbook(tmp_path, module, {"kubeconfig": kubeconfig, **args}, check=check)
    completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stdout + completed.stderr
    with open(result_file, encoding="utf-8") as handle:
        return json.load(handle)


def test_replication_info_needs_only_what_its_documentation_names(tmp_path, cluster):
    runtime, _pods = cluster
    kubeconfig = service_account_kubeconfig(runtime, tmp_path, "status-reader", _permissions.READ)
    result = run(tmp_path, "pg_replication_info", kubeconfig)
    assert not result.get("failed"), result.get("msg")
    assert result["cluster"]["healthy"] and result["cluster"]["primary"] == "postgres-0"


def test_switchover_needs_only_what_its_documentation_names(tmp_path, cluster):
    runtime, pods = cluster
    kubeconfig = service_account_kubeconfig(runtime, tmp_path, "operator-exact", _permissions.OPERATE)
    checked = run(tmp_path, "pg_failover", kubeconfig, check=True)
    assert not checked.get("failed"), checked.get("msg")
    result = run(tmp_path, "pg_switchover", kubeconfig, candidate="postgres-1", exec_timeout=5)
    assert not result.get("failed"), f"{result.get('msg')}\n{pods.logs()}"
    assert result["new_primary"] == "postgres-1"
    pods.wait_healthy("postgres-1")


def test_a_role_without_patch_services_is_refused_before_any_change(tmp_path, cluster):
    runtime, pods = cluster
    primary = pods.primaries()[0]
    candidate = "postgres-2" if primary != "postgres-2" else "postgres-0"
    without = tuple(p for p in _permissions.OPERATE if p.describe() != "patch services")
    kubeconfig = service_account_kubeconfig(runtime, tmp_path, "operator-no-services", without)
    record = pods.record()
    result = run(tmp_path, "pg_switchover", kubeconfig, candidate=candidate)
    assert result["failed"] is True
    assert result["msg"] == (
        "The credentials lack patch services (to point the -rw Service at the new primary) in namespace postgres, "
        "which a switchover needs: nothing was changed."
    )
    assert pods.record()["metadata"]["resourceVersion"] == record["metadata"]["resourceVersion"]
    assert pods.primaries() == [primary]
