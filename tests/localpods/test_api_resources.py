"""Tests of the API stand-in's served resources: discovery documents, server-side Tables and the OpenAPI v3 documents.

Besides checking the documents' shapes against upstream's, the last tests serve only these documents from a small
plain-HTTP server on 127.0.0.1 and run the real clients against it: kubectl 1.32 (api-resources, get, get -o yaml, logs,
exec and apply --server-side), the kubernetes Python client's DynamicClient and kubernetes.core's discoverer, recording
every path they request.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.localpods.api import resources as res
from tests.localpods.api.errors import ApiError, not_found

KUBECTL = "/usr/bin/kubectl"
NOW = datetime(2025, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
needs_kubectl = pytest.mark.skipif(not os.path.exists(KUBECTL), reason=f"kubectl 1.32 is not installed at {KUBECTL}")

# kubectl get's Accept header for server-side printing, as kubectl 1.32 sends it.
KUBECTL_TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
# client-go's Accept header for /api and /apis: aggregated discovery v2, then v2beta1, then the legacy documents.
KUBECTL_DISCOVERY_ACCEPT = ",".join(f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList" for v in ("v2", "v2beta1")) + ",application/json"


def stamp(delta: timedelta, now: datetime = NOW) -> str:
    return (now - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_pod(name: str, age: timedelta = timedelta(minutes=5), now: datetime = NOW) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "11", "creationTimestamp": stamp(age, now)},
        "spec": {"nodeName": "local", "containers": [{"name": "postgres", "image": "postgres:16"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "podIPs": [{"ip": "10.0.0.7"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"name": "postgres", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": stamp(age, now)}}}],
        },
    }


def crashing_pod(name: str, now: datetime = NOW) -> dict[str, Any]:
    pod = running_pod(name, timedelta(hours=2), now)
    pod["status"]["conditions"][0]["status"] = "False"
    pod["status"]["containerStatuses"] = [
        {
            "name": "postgres",
            "ready": False,
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": stamp(timedelta(seconds=40), now)}},
        }
    ]
    return pod


POD = res.find("", "v1", "pods")
CONFIGMAPS = res.find("", "v1", "configmaps")
STATEFULSETS = res.find("apps", "v1", "statefulsets")


# --- resources and lookups --------------------------------------------------------------------------------------------


def test_lookups_find_resources_by_path_and_by_kind() -> None:
    assert POD is not None and POD.api_version == "v1" and POD.namespaced and POD.list_kind == "PodList"
    assert STATEFULSETS is not None and STATEFULSETS.api_version == "apps/v1" and STATEFULSETS.subresources == ("scale", "status")
    assert res.by_kind("apps/v1", "StatefulSet") is STATEFULSETS
    assert res.by_kind("rbac.authorization.k8s.io/v1", "ClusterRole").namespaced is False
    assert res.by_kind("v1", "StatefulSet") is None
    assert res.find("apps", "v1", "pods") is None
    assert res.find("", "v1", "nodes") is None
    review = res.by_kind("authorization.k8s.io/v1", "SelfSubjectAccessReview")
    assert review is not None and review.verbs == ("create",) and review.list_kind == "" and not review.stored


def test_storage_version_hashes_match_upstream() -> None:
    # Values from kube-apiserver's own discovery fixtures (api/discovery/*.json).
    expected = {
        ("", "pods"): "xPOwRZ+Yhw8=",
        ("", "configmaps"): "qFsyl6wFWjQ=",
        ("", "namespaces"): "Q3oi5N2YM8M=",
        ("", "events"): "r2yiGXH7wu8=",
        ("apps", "statefulsets"): "H+vl74LkKdo=",
        ("batch", "cronjobs"): "sd5LIXh4Fjs=",
        ("policy", "poddisruptionbudgets"): "EVWiDmWqyJw=",
        ("rbac.authorization.k8s.io", "roles"): "7FuwZcIIItM=",
        ("coordination.k8s.io", "leases"): "gqkMMb/YqFM=",
        ("storage.k8s.io", "storageclasses"): "K+m6uJwbjGY=",
    }
    for (group, plural), value in expected.items():
        assert res.find(group, "v1", plural).storage_version_hash == value


# --- discovery documents ----------------------------------------------------------------------------------------------


def test_core_versions_and_group_list_are_shaped_as_upstream() -> None:
    assert res.core_versions("127.0.0.1:7443") == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:7443"}],
    }
    groups = res.group_list()
    assert groups["kind"] == "APIGroupList" and groups["apiVersion"] == "v1"
    names = [group["name"] for group in groups["groups"]]
    assert names[:2] == ["apps", "authentication.k8s.io"] and names[-1] == "discovery.k8s.io" and len(names) == len(set(names)) == 10
    apps = groups["groups"][0]
    assert apps == {
        "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
    }
    assert res.api_group("batch")["kind"] == "APIGroup" and res.api_group("extensions") is None


def test_core_resource_list_has_subresources_and_no_api_version() -> None:
    document = res.resource_list("", "v1")
    assert document is not None and "apiVersion" not in document and document["groupVersion"] == "v1"
    entries = {entry["name"]: entry for entry in document["resources"]}
    names = [entry["name"] for entry in document["resources"]]
    assert names == sorted(names)
    assert entries["pods"] == {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "shortNames": ["po"],
        "categories": ["all"],
        "storageVersionHash": "xPOwRZ+Yhw8=",
    }
    assert entries["pods/exec"] == {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]}
    assert entries["pods/log"]["kind"] == "Pod" and entries["pods/log"]["verbs"] == ["get"]
    eviction = entries["pods/eviction"]
    assert (eviction["group"], eviction["version"], eviction["kind"], eviction["verbs"]) == ("policy", "v1", "Eviction", ["create"])
    assert entries["serviceaccounts/token"]["group"] == "authentication.k8s.io" and entries["serviceaccounts/token"]["kind"] == "TokenRequest"
    assert entries["namespaces"]["verbs"] == ["create", "delete", "get", "list", "patch", "update", "watch"]
    assert entries["endpoints"]["singularName"] == "endpoints"
    assert "nodes" not in entries


def test_group_resource_lists() -> None:
    apps = res.resource_list("apps", "v1")
    assert apps["apiVersion"] == "v1" and apps["groupVersion"] == "apps/v1"
    entries = {entry["name"]: entry for entry in apps["resources"]}
    assert entries["statefulsets/scale"] == {
        "name": "statefulsets/scale",
        "singularName": "",
        "namespaced": True,
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    }
    assert entries["statefulsets/status"]["kind"] == "StatefulSet" and "group" not in entries["statefulsets/status"]
    reviews = res.resource_list("authorization.k8s.io", "v1")["resources"]
    assert [(r["name"], r["verbs"], "storageVersionHash" in r, r["namespaced"]) for r in reviews] == [
        ("selfsubjectaccessreviews", ["create"], False, False),
        ("selfsubjectrulesreviews", ["create"], False, False),
    ]
    assert res.resource_list("apps", "v1beta1") is None and res.resource_list("extensions", "v1") is None


def test_version_info() -> None:
    info = res.version_info("v1.32.4")
    assert (info["major"], info["minor"], info["gitVersion"], info["compiler"]) == ("1", "32", "v1.32.4", "gc")
    assert info["platform"].startswith("linux/")
    assert res.version_info("v1.32.4", gitCommit="abc")["gitCommit"] == "abc"


def test_aggregated_discovery_shape() -> None:
    core = res.aggregated_discovery(core=True)
    assert core["kind"] == "APIGroupDiscoveryList" and core["apiVersion"] == "apidiscovery.k8s.io/v2" and len(core["items"]) == 1
    assert core["items"][0]["metadata"] == {"creationTimestamp": None}
    version = core["items"][0]["versions"][0]
    assert version["version"] == "v1" and version["freshness"] == "Current"
    pods = next(r for r in version["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "", "kind": "Pod"} and pods["scope"] == "Namespaced"
    eviction = next(s for s in pods["subresources"] if s["subresource"] == "eviction")
    assert eviction == {"subresource": "eviction", "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"}, "verbs": ["create"]}
    groups = res.aggregated_discovery(core=False)
    assert [item["metadata"]["name"] for item in groups["items"]] == list(res.GROUP_ORDER)


def test_negotiation_recognises_kubectl_headers() -> None:
    assert res.wants_table(KUBECTL_TABLE_ACCEPT)
    assert res.table_api_version(KUBECTL_TABLE_ACCEPT) == "meta.k8s.io/v1"
    assert res.table_api_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "meta.k8s.io/v1beta1"
    assert not res.wants_table("application/json")
    assert not res.wants_table("application/json, */*")
    assert not res.wants_table("")
    assert not res.wants_table("application/json;q=0.9,application/json;as=Table;v=v1;g=meta.k8s.io;q=0.5")
    assert res.wants_aggregated_discovery(KUBECTL_DISCOVERY_ACCEPT)
    assert not res.wants_aggregated_discovery("application/json")
    assert not res.wants_aggregated_discovery("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


def test_discovery_for_path_routes_every_document() -> None:
    assert res.discovery_for_path("/api")[1]["kind"] == "APIVersions"
    assert res.discovery_for_path("/apis/")[1]["kind"] == "APIGroupList"
    kind, document = res.discovery_for_path("/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert kind == res.AGGREGATED_DISCOVERY_CONTENT_TYPE and document["kind"] == "APIGroupDiscoveryList"
    assert res.discovery_for_path("/api/v1")[1]["groupVersion"] == "v1"
    assert res.discovery_for_path("/apis/apps")[1]["kind"] == "APIGroup"
    assert res.discovery_for_path("/apis/apps/v1?timeout=32s")[1]["groupVersion"] == "apps/v1"
    assert res.discovery_for_path("/version")[1]["gitVersion"] == res.DEFAULT_GIT_VERSION
    assert res.discovery_for_path("/openapi/v3")[1]["paths"]["api/v1"]["serverRelativeURL"].startswith("/openapi/v3/api/v1?hash=")
    assert res.discovery_for_path("/apis/apps/v1/namespaces/ns/statefulsets") is None
    assert res.discovery_for_path("/api/v2") is None and res.discovery_for_path("/openapi/v3/apis/apps/v2") is None


# --- tables -----------------------------------------------------------------------------------------------------------


def cells(table: dict[str, Any]) -> list[list[Any]]:
    return [row["cells"] for row in table["rows"]]


def test_human_duration_matches_apimachinery() -> None:
    cases = {-5: "<invalid>", -1: "0s", 0: "0s", 119: "119s", 120: "2m", 303: "5m3s", 600: "10m", 3 * 3600 - 1: "179m", 3 * 3600: "3h"}
    cases.update({7 * 3600 + 59 * 60: "7h59m", 9 * 3600: "9h", 49 * 3600: "2d1h", 10 * 86400: "10d", 800 * 86400: "2y70d", 9 * 365 * 86400: "9y"})
    for seconds, text in cases.items():
        assert res.human_duration(seconds) == text, seconds


def test_pod_table_columns_rows_and_objects() -> None:
    table = res.table(POD, [running_pod("pod-a"), crashing_pod("pod-b")], list_metadata={"resourceVersion": "42"}, now=NOW)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1" and table["metadata"] == {"resourceVersion": "42"}
    columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]
    assert table["columnDefinitions"][0]["format"] == "name" and set(table["columnDefinitions"][1]) == {"name", "type", "format", "description", "priority"}
    assert cells(table) == [
        ["pod-a", "1/1", "Running", "0", "5m", "10.0.0.7", "local", "<none>", "<none>"],
        ["pod-b", "0/1", "CrashLoopBackOff", "3 (40s ago)", "120m", "10.0.0.7", "local", "<none>", "<none>"],
    ]
    assert table["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": running_pod("pod-a")["metadata"]}
    full = res.table(POD, [running_pod("pod-a")], "Object", now=NOW)
    assert full["rows"][0]["object"]["spec"]["nodeName"] == "local" and full["metadata"] == {}
    assert res.table(POD, [running_pod("pod-a")], "None", now=NOW)["rows"][0]["object"] is None
    with pytest.raises(ApiError) as raised:
        res.table(POD, [], "Everything")
    assert raised.value.status == 400 and raised.value.reason == "BadRequest"
    assert res.table(POD, [], now=NOW)["rows"] == []


def test_pod_status_column_follows_upstream_rules() -> None:
    init = running_pod("init")
    init["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}, {"name": "more", "image": "busybox"}]
    init["status"]["phase"] = "Pending"
    init["status"]["conditions"] = []
    init["status"]["initContainerStatuses"] = [
        {"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
        {"name": "more", "restartCount": 0, "state": {"running": {}}},
    ]
    init["status"]["containerStatuses"] = [{"name": "postgres", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
    sidecar = running_pod("sidecar")
    sidecar["spec"]["initContainers"] = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]
    sidecar["status"]["initContainerStatuses"] = [{"name": "proxy", "ready": True, "started": True, "restartCount": 0, "state": {"running": {}}}]
    terminating = running_pod("going")
    terminating["metadata"]["deletionTimestamp"] = stamp(timedelta(seconds=1))
    done = running_pod("done")
    done["status"]["phase"] = "Succeeded"
    done["status"]["conditions"][0]["status"] = "False"
    done["status"]["containerStatuses"][0].update(ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    gated = running_pod("gated")
    gated["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}
    table = res.table(POD, [init, sidecar, terminating, done, gated], now=NOW)
    assert [row[:3] for row in cells(table)] == [
        ["init", "0/1", "Init:1/2"],
        ["sidecar", "2/2", "Running"],
        ["going", "1/1", "Terminating"],
        ["done", "0/1", "Completed"],
        ["gated", "0/1", "SchedulingGated"],
    ]
    assert table["rows"][3]["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]
    assert cells(table)[4][5:] == ["<none>", "local", "<none>", "<none>"]


def test_tables_of_other_kinds() -> None:
    created = {"creationTimestamp": stamp(timedelta(days=3)), "namespace": "ns"}
    configmap = {"metadata": {"name": "x", **created}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells(res.table(CONFIGMAPS, [configmap], now=NOW)) == [["x", 3, "3d"]]
    assert [c["name"] for c in res.table(CONFIGMAPS, [], now=NOW)["columnDefinitions"]] == ["Name", "Data", "Age"]
    secret = {"metadata": {"name": "s", **created}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}
    assert cells(res.table(res.find("", "v1", "secrets"), [secret], now=NOW)) == [["s", "kubernetes.io/tls", 2, "3d"]]
    service = {
        "metadata": {"name": "db", **created},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"role": "primary", "app": "pg"}},
    }
    service["spec"]["ports"] = [{"port": 5432, "protocol": "TCP"}, {"port": 8008, "nodePort": 30080, "protocol": "TCP"}]
    headless = {"metadata": {"name": "hl", **created}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    table = res.table(res.find("", "v1", "services"), [service, headless], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert cells(table) == [
        ["db", "ClusterIP", "10.96.0.10", "<none>", "5432/TCP,8008:30080/TCP", "3d", "app=pg,role=primary"],
        ["hl", "ClusterIP", "None", "<none>", "<none>", "3d", "<none>"],
    ]
    sts = {
        "metadata": {"name": "postgres", **created},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}, {"name": "exp", "image": "exporter"}]}}},
        "status": {"readyReplicas": 2},
    }
    assert cells(res.table(STATEFULSETS, [sts], now=NOW)) == [["postgres", "2/3", "3d", "pg,exp", "postgres:16,exporter"]]
    namespace = {"metadata": {"name": "ns", "creationTimestamp": stamp(timedelta(hours=1))}, "status": {"phase": "Active"}}
    assert cells(res.table(res.find("", "v1", "namespaces"), [namespace], now=NOW)) == [["ns", "Active", "60m"]]
    pvc = {
        "metadata": {"name": "data-postgres-0", **created},
        "spec": {"volumeName": "pv-1", "storageClassName": "local", "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]},
    }
    assert cells(res.table(res.find("", "v1", "persistentvolumeclaims"), [pvc], now=NOW)) == [
        ["data-postgres-0", "Bound", "pv-1", "1Gi", "RWO", "local", "<unset>", "3d", "<unset>"]
    ]
    job = {
        "metadata": {"name": "backup", **created},
        "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "b", "image": "pg"}]}}, "selector": {"matchLabels": {"job": "b"}}},
        "status": {"succeeded": 1, "startTime": stamp(timedelta(days=3)), "completionTime": stamp(timedelta(days=3) - timedelta(seconds=75))},
    }
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert cells(res.table(res.find("batch", "v1", "jobs"), [job], now=NOW)) == [["backup", "Complete", "1/1", "75s", "3d", "b", "pg", "job=b"]]
    cronjob = {"metadata": {"name": "nightly", **created}, "spec": {"schedule": "0 1 * * *", "suspend": False}, "status": {}}
    assert cells(res.table(res.find("batch", "v1", "cronjobs"), [cronjob], now=NOW)) == [
        ["nightly", "0 1 * * *", "<none>", "False", 0, "<none>", "3d", "", "", "<none>"]
    ]
    deploy = {
        "metadata": {"name": "web", **created},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [{"name": "w", "image": "nginx"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
    }
    assert cells(res.table(res.find("apps", "v1", "deployments"), [deploy], now=NOW)) == [["web", "2/2", 2, 1, "3d", "w", "nginx", "app=web"]]
    revision = {
        "metadata": {
            "name": "postgres-5d8",
            **created,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "postgres", "controller": True}],
        },
        "revision": 4,
    }
    assert cells(res.table(res.find("apps", "v1", "controllerrevisions"), [revision], now=NOW)) == [["postgres-5d8", "statefulset.apps/postgres", 4, "3d"]]
    binding = {
        "metadata": {"name": "rb", **created},
        "roleRef": {"kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, {"kind": "User", "name": "alice"}],
    }
    assert cells(res.table(res.find("rbac.authorization.k8s.io", "v1", "rolebindings"), [binding], now=NOW)) == [
        ["rb", "Role/reader", "3d", "alice", "", "ns/sa"]
    ]
    role = {"metadata": {"name": "reader", "creationTimestamp": "2025-04-28T12:00:00Z"}}
    role_table = res.table(res.find("rbac.authorization.k8s.io", "v1", "roles"), [role], now=NOW)
    assert [c["name"] for c in role_table["columnDefinitions"]] == ["Name", "Created At"] and cells(role_table) == [["reader", "2025-04-28T12:00:00Z"]]
    lease = {"metadata": {"name": "leader", **created}, "spec": {"holderIdentity": "postgres-0"}}
    assert cells(res.table(res.find("coordination.k8s.io", "v1", "leases"), [lease], now=NOW)) == [["leader", "postgres-0", "3d"]]
    pdb = {"metadata": {"name": "pg", **created}, "spec": {"maxUnavailable": 1}, "status": {"disruptionsAllowed": 1}}
    assert cells(res.table(res.find("policy", "v1", "poddisruptionbudgets"), [pdb], now=NOW)) == [["pg", "N/A", "1", 1, "3d"]]
    endpoints = {"metadata": {"name": "db", **created}, "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 5)], "ports": [{"port": 5432}]}]}
    assert cells(res.table(res.find("", "v1", "endpoints"), [endpoints], now=NOW)) == [["db", "10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:5432 + 1 more...", "3d"]]
    default_sc = {"metadata": {"name": "local", **created, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "local"}
    assert cells(res.table(res.find("storage.k8s.io", "v1", "storageclasses"), [default_sc], now=NOW)) == [
        ["local (default)", "local", "Delete", "Immediate", False, "3d"]
    ]


# --- OpenAPI v3 -------------------------------------------------------------------------------------------------------


def test_openapi_patch_operations_advertise_field_validation() -> None:
    for group, version in res.group_versions():
        document = res.openapi_v3_document(group, version)
        assert document["openapi"] == "3.0.0" and document["info"]["version"] == res.DEFAULT_GIT_VERSION
        patched = set()
        for path, item in document["paths"].items():
            patch = item.get("patch")
            if patch is None:
                continue
            gvk = patch["x-kubernetes-group-version-kind"]
            patched.add((gvk["group"], gvk["version"], gvk["kind"]))
            query = {p["name"] for p in patch["parameters"] if p["in"] == "query"}
            assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= query, path
            assert "application/apply-patch+yaml" in patch["requestBody"]["content"]
            assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
        for resource in res.RESOURCES:
            if resource.group == group and "patch" in resource.verbs:
                assert (group, version, resource.kind) in patched
        schemas = document["components"]["schemas"]
        for resource in res.RESOURCES:
            if resource.group == group:
                schema = schemas[f"io.k8s.api.{group.split('.')[0] if group else 'core'}.v1.{resource.kind}"]
                assert schema["x-kubernetes-group-version-kind"] == [{"group": group, "kind": resource.kind, "version": "v1"}]
    core = res.openapi_v3_document("", "v1")
    assert core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["operationId"] == "patchCoreV1NamespacedPod"
    assert core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["x-kubernetes-action"] == "connect"
    rbac = res.openapi_v3_document("rbac.authorization.k8s.io", "v1")
    assert rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]["operationId"] == "patchRbacAuthorizationV1ClusterRole"
    assert res.openapi_v3_document("apps", "v1beta1") is None


def test_openapi_index_hashes_identify_documents() -> None:
    index = res.openapi_v3_index()
    assert set(index["paths"]) == {res.openapi_v3_key(g, v) for g, v in res.group_versions()}
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    digest = url.split("hash=")[1]
    assert len(digest) == 128 and digest == digest.upper() and digest != index["paths"]["api/v1"]["serverRelativeURL"].split("hash=")[1]
    assert res.openapi_v3_for_path(url) == res.openapi_v3_document("apps", "v1")
    assert res.openapi_v3_for_path("/openapi/v3/api/v1") == res.openapi_v3_document("", "v1")


# --- the real clients against a server of these documents ----------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Objects:
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    configmaps: dict[str, dict[str, Any]] = field(default_factory=dict)


class DocumentServer(ThreadingHTTPServer):
    """Serves discovery, OpenAPI, two pods and a ConfigMap; answers apply PATCHes by echoing the body; records requests."""

    daemon_threads = True

    def __init__(self, aggregated: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.aggregated = aggregated
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.objects = Objects()
        # The server prints ages against the wall clock, so its objects are dated from it.
        now = datetime.now(timezone.utc)
        self.objects.pods = {"pod-a": running_pod("pod-a", now=now), "pod-b": crashing_pod("pod-b", now=now)}
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns", "creationTimestamp": stamp(timedelta(days=1), now)}}
        self.objects.namespaces = {"ns": {**namespace, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}}
        self.objects.configmaps = {
            "x": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x", "namespace": "ns", "uid": "uid-x", "resourceVersion": "7", "creationTimestamp": stamp(timedelta(days=1))},
                "data": {"key": "value"},
            }
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self) -> list[Recorded]:
        with self.lock:
            taken, self.requests = self.requests, []
        return taken


class _Handler(BaseHTTPRequestHandler):
    server: DocumentServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle()

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, document: Any, content_type: str = "application/json") -> None:
        self._send(status, content_type, json.dumps(document).encode())

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests.append(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        accept = self.headers.get("Accept", "")
        if self.command == "GET":
            answer = res.discovery_for_path(self.path, accept if self.server.aggregated else "", f"127.0.0.1:{self.server.server_address[1]}")
            if answer is not None:
                self._json(200, answer[1], answer[0])
                return
        parts = url.path.strip("/").split("/")
        try:
            self._resource(parts, query, accept, body)
        except ApiError as error:
            self._json(error.status, error.status_body())

    def _resource(self, parts: list[str], query: dict[str, str], accept: str, body: bytes) -> None:
        # Only /api/v1/namespaces/<name>, /api/v1/namespaces/ns/<pods|configmaps>[/<name>[/log|/exec]] and apply PATCHes.
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
            if parts[3] not in self.server.objects.namespaces:
                raise not_found("namespaces", parts[3])
            self._json(200, self.server.objects.namespaces[parts[3]])
            return
        if len(parts) < 5 or parts[:2] not in (["api", "v1"], ["apis", "apps"]) or "namespaces" not in parts:
            raise not_found("path", "/".join(parts))
        group = "" if parts[0] == "api" else parts[1]
        at = parts.index("namespaces")
        plural, rest = parts[at + 2], parts[at + 3 :]
        resource = res.find(group, "v1", plural)
        if resource is None:
            raise not_found(plural, "", group)
        store = {"pods": self.server.objects.pods, "configmaps": self.server.objects.configmaps}.get(plural, {})
        if self.command == "PATCH" and len(rest) == 1:
            self._apply(resource, rest[0], query, body, store)
            return
        if not rest:
            items = list(store.values())
            if res.wants_table(accept):
                self._json(200, res.table(resource, items, query.get("includeObject", ""), list_metadata={"resourceVersion": "100"}))
            else:
                self._json(200, {"apiVersion": resource.api_version, "kind": resource.list_kind, "metadata": {"resourceVersion": "100"}, "items": items})
            return
        obj = store.get(rest[0])
        if obj is None:
            raise not_found(resource.group_resource.split(".")[0], rest[0], group)
        if len(rest) == 2 and rest[1] == "log":
            self._send(200, "text/plain", b"database system is ready to accept connections\n")
        elif len(rest) == 2:
            # A stand-in that cannot stream answers the upgrade as a refusal, which shows how kubectl falls back.
            raise ApiError(400, "BadRequest", "upgrade not supported by this test server")
        elif res.wants_table(accept):
            self._json(200, res.table(resource, [obj], query.get("includeObject", ""), list_metadata=obj["metadata"]))
        else:
            self._json(200, obj)

    def _apply(self, resource: res.Resource, name: str, query: dict[str, str], body: bytes, store: dict[str, dict[str, Any]]) -> None:
        if self.headers.get("Content-Type") == "application/strategic-merge-patch+json" and name in store:
            self._json(200, merged(store[name], json.loads(body)))
            return
        if self.headers.get("Content-Type") != "application/apply-patch+yaml":
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {self.headers.get('Content-Type')}")
        obj = yaml.safe_load(body)
        existing = store.get(name)
        obj["metadata"].setdefault("uid", f"uid-{name}")
        obj["metadata"]["resourceVersion"] = "101"
        obj["metadata"].setdefault("creationTimestamp", stamp(timedelta(0)))
        obj["metadata"]["managedFields"] = [
            {"manager": query.get("fieldManager", ""), "operation": "Apply", "apiVersion": resource.api_version, "fieldsType": "FieldsV1", "fieldsV1": {}}
        ]
        self._json(200 if existing else 201, obj)


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Maps merged key by key (enough for a ConfigMap's strategic merge patch, which has no lists)."""
    result = dict(base)
    for key, value in patch.items():
        result[key] = merged(result.get(key) or {}, value) if isinstance(value, dict) else value
    return result


@pytest.fixture(params=["legacy", "aggregated"])
def document_server(request: pytest.FixtureRequest) -> Iterator[DocumentServer]:
    server = DocumentServer(aggregated=request.param == "aggregated")
    thread = threading.Thread(target=server.serve_forever, name="document-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Kubectl:
    """Runs kubectl against a DocumentServer with its own kubeconfig and, per call, an empty discovery cache."""

    def __init__(self, server: DocumentServer, home: Path) -> None:
        self.server = server
        self.home = home
        self.calls = 0
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server.url}}],
            "users": [{"name": "local", "user": {}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local", "namespace": "ns"}}],
            "current-context": "local",
        }
        self.kubeconfig = home / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def __call__(self, *args: str, check: bool = True) -> tuple[subprocess.CompletedProcess[str], list[Recorded]]:
        self.calls += 1
        self.server.take()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}
        command = [KUBECTL, f"--cache-dir={self.home / f'cache-{self.calls}'}", *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert done.returncode == 0, f"{' '.join(args)} failed: {done.stderr}"
        return done, self.server.take()


def route(recorded: Recorded) -> str:
    """``METHOD path?query`` without client-go's ``timeout`` parameter and with any OpenAPI ``hash`` shortened to ``hash=H``."""
    url = urlsplit(recorded.path)
    query = [f"{key}={'H' if key == 'hash' else value}" for key, values in parse_qs(url.query).items() if key != "timeout" for value in values]
    return f"{recorded.method} {url.path}" + ("?" + "&".join(query) if query else "")


def paths(recorded: list[Recorded]) -> list[str]:
    return [route(r) for r in recorded]


def discovery_paths(server: DocumentServer) -> set[str]:
    """What every kubectl command asks first: /version (the gcloud dispatcher picks its kubectl by it), then discovery."""
    if server.aggregated:
        return {"GET /version", "GET /api", "GET /apis"}
    return {"GET /version", "GET /api", "GET /apis"} | {f"GET /{res.openapi_v3_key(g, v)}" for g, v in res.group_versions()}


@pytest.fixture
def kubectl(document_server: DocumentServer, tmp_path: Path) -> Kubectl:
    return Kubectl(document_server, tmp_path)


@needs_kubectl
def test_kubectl_api_resources(kubectl: Kubectl) -> None:
    done, recorded = kubectl("api-resources")
    assert done.stderr == ""
    lines = {tuple(line.split()) for line in done.stdout.splitlines()[1:]}
    assert done.stdout.split()[:5] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ("pods", "po", "v1", "true", "Pod") in lines
    assert ("statefulsets", "sts", "apps/v1", "true", "StatefulSet") in lines
    assert ("selfsubjectreviews", "authentication.k8s.io/v1", "false", "SelfSubjectReview") in lines
    assert ("clusterroles", "rbac.authorization.k8s.io/v1", "false", "ClusterRole") in lines
    assert len(lines) == len(res.RESOURCES)
    assert set(paths(recorded)) == discovery_paths(kubectl.server)
    roots = [r for r in recorded if route(r) in ("GET /api", "GET /apis")]
    assert len(roots) == 2 and all(r.headers["accept"] == KUBECTL_DISCOVERY_ACCEPT for r in roots)


@needs_kubectl
def test_kubectl_get_pods_prints_the_server_table(kubectl: Kubectl) -> None:
    done, recorded = kubectl("get", "pods", "-n", "ns")
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [row.split()[:3] for row in rows] == [["pod-a", "1/1", "Running"], ["pod-b", "0/1", "CrashLoopBackOff"]]
    assert "(" in rows[1] and "ago)" in rows[1]
    listing = [r for r in recorded if r.path.startswith("/api/v1/namespaces/ns/pods")]
    assert rows[0].split()[-1].startswith("5m"), "ages are the server's, against the wall clock"
    assert paths(listing) == ["GET /api/v1/namespaces/ns/pods?limit=500"]
    assert res.wants_table(listing[0].headers["accept"]) and listing[0].headers["accept"] == KUBECTL_TABLE_ACCEPT
    assert set(paths(recorded)) == discovery_paths(kubectl.server) | {"GET /api/v1/namespaces/ns/pods?limit=500"}
    wide, _requests = kubectl("get", "pods", "-o", "wide")
    assert wide.stdout.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    single, recorded = kubectl("get", "pod", "pod-a")
    assert single.stdout.splitlines()[1].split()[:3] == ["pod-a", "1/1", "Running"]
    assert "GET /api/v1/namespaces/ns/pods/pod-a" in paths(recorded)


@needs_kubectl
def test_kubectl_get_configmap_yaml(kubectl: Kubectl) -> None:
    done, recorded = kubectl("get", "cm", "x", "-o", "yaml")
    assert yaml.safe_load(done.stdout) == kubectl.server.objects.configmaps["x"]
    fetch = [r for r in recorded if "/configmaps/" in r.path]
    assert paths(fetch) == ["GET /api/v1/namespaces/ns/configmaps/x"] and not res.wants_table(fetch[0].headers["accept"])
    assert set(paths(recorded)) == discovery_paths(kubectl.server) | {"GET /api/v1/namespaces/ns/configmaps/x"}
    missing, recorded = kubectl("get", "cm", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == 'Error from server (NotFound): configmaps "nope" not found'
    # On NotFound kubectl checks that the namespace exists, to tell a missing namespace from a missing object.
    assert set(paths(recorded)) == discovery_paths(kubectl.server) | {"GET /api/v1/namespaces/ns/configmaps/nope", "GET /api/v1/namespaces/ns"}


@needs_kubectl
def test_kubectl_logs_and_exec_requests(kubectl: Kubectl) -> None:
    logs, recorded = kubectl("logs", "pod-a")
    assert logs.stdout == "database system is ready to accept connections\n"
    assert set(paths(recorded)) == discovery_paths(kubectl.server) | {
        "GET /api/v1/namespaces/ns/pods/pod-a",
        "GET /api/v1/namespaces/ns/pods/pod-a/log?container=postgres",
    }
    executed, recorded = kubectl("exec", "pod-a", "--", "true", check=False)
    assert executed.returncode != 0
    pod_requests = [r for r in recorded if "/pods/" in r.path]
    assert pod_requests[0].method == "GET" and pod_requests[0].path == "/api/v1/namespaces/ns/pods/pod-a"
    attempts = [(r.method, r.path.split("?")[0], r.headers.get("upgrade", "").lower()) for r in pod_requests[1:]]
    # kubectl 1.32 first asks for a WebSocket (v5.channel.k8s.io) and, refused, retries over SPDY.
    assert attempts == [("GET", "/api/v1/namespaces/ns/pods/pod-a/exec", "websocket"), ("POST", "/api/v1/namespaces/ns/pods/pod-a/exec", "spdy/3.1")]
    assert "v5.channel.k8s.io" in pod_requests[1].headers["sec-websocket-protocol"]
    assert parse_qs(urlsplit(pod_requests[1].path).query) == {"command": ["true"], "container": ["postgres"], "stderr": ["true"], "stdout": ["true"]}
    assert not any("/openapi" in r.path for r in recorded)


MANIFESTS = {
    "cm.yaml": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}, "data": {"key": "new"}},
    "sts.yaml": {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "postgres", "namespace": "ns"},
        "spec": {
            "serviceName": "postgres",
            "selector": {"matchLabels": {"app": "pg"}},
            "template": {"metadata": {"labels": {"app": "pg"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}},
        },
    },
}


@needs_kubectl
def test_kubectl_apply_server_side_uses_server_field_validation(kubectl: Kubectl, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name, manifest in MANIFESTS.items():
        (manifests / name).write_text(yaml.safe_dump(manifest))
    done, recorded = kubectl("apply", "--server-side", "-f", str(manifests), "--dry-run=server")
    assert done.stdout.splitlines() == ["configmap/x serverside-applied (server dry run)", "statefulset.apps/postgres serverside-applied (server dry run)"]
    assert done.stderr == ""
    patches = [r for r in recorded if r.method == "PATCH"]
    assert [r.path.split("?")[0] for r in patches] == ["/api/v1/namespaces/ns/configmaps/x", "/apis/apps/v1/namespaces/ns/statefulsets/postgres"]
    for patch in patches:
        assert parse_qs(urlsplit(patch.path).query) == {"dryRun": ["All"], "fieldManager": ["kubectl"], "fieldValidation": ["Strict"], "force": ["false"]}
        assert patch.headers["content-type"] == "application/apply-patch+yaml"
    assert json.loads(patches[0].body) == MANIFESTS["cm.yaml"]
    openapi = ["GET /openapi/v3", "GET /openapi/v3/api/v1?hash=H", "GET /openapi/v3/apis/apps/v1?hash=H"]
    assert sorted(p for p in paths(recorded) if "/openapi" in p) == openapi
    assert set(paths(recorded)) == discovery_paths(kubectl.server) | set(openapi) | set(paths(patches))


@needs_kubectl
def test_kubectl_client_side_apply_falls_back_to_builtin_types(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(yaml.safe_dump(MANIFESTS["cm.yaml"]))
    done, recorded = kubectl("apply", "-f", str(manifest))
    assert done.stdout == "configmap/x configured\n"
    # kubectl's own warning for an object it did not create; no complaint about OpenAPI schemas.
    assert "last-applied-configuration annotation" in done.stderr and "openapi" not in done.stderr.lower()
    patch = next(r for r in recorded if r.method == "PATCH")
    assert patch.headers["content-type"] == "application/strategic-merge-patch+json"
    assert parse_qs(urlsplit(patch.path).query) == {"fieldManager": ["kubectl-client-side-apply"], "fieldValidation": ["Strict"]}
    assert json.loads(patch.body)["data"] == {"key": "new"}
    # The PATCH operations do not advertise strategic merge, so kubectl tries OpenAPI v2 once (404) and uses its Go types.
    expected = {"GET /openapi/v3", "GET /openapi/v3/api/v1?hash=H", "GET /openapi/v2", "GET /api/v1/namespaces/ns/configmaps/x", route(patch)}
    assert set(paths(recorded)) == discovery_paths(kubectl.server) | expected


def assert_python_discovery(requested: list[str]) -> None:
    """The Python clients read only the legacy documents, lazily: apps/v1 for StatefulSet, every ``*/v1`` for a bare ``v1``."""
    assert requested[:3] == ["GET /version", "GET /apis", "GET /apis/apps/v1"]
    others = {f"GET /{res.openapi_v3_key(g, v)}" for g, v in res.group_versions()} - {"GET /apis/apps/v1"}
    assert requested[3] == "GET /api/v1" and set(requested[3:]) == others and len(requested) == 3 + len(others)


def test_dynamic_client_discovers_statefulsets_and_pods(document_server: DocumentServer, tmp_path: Path) -> None:
    from kubernetes import client as k8s_client
    from kubernetes import dynamic

    configuration = k8s_client.Configuration()
    configuration.host = document_server.url
    api = k8s_client.ApiClient(configuration)
    document_server.take()
    client = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    statefulsets = client.resources.get(api_version="apps/v1", kind="StatefulSet")
    pods = client.resources.get(api_version="v1", kind="Pod")
    assert (statefulsets.name, statefulsets.group_version, statefulsets.namespaced) == ("statefulsets", "apps/v1", True)
    assert set(statefulsets.subresources) == {"scale", "status"} and statefulsets.subresources["scale"].kind == "Scale"
    assert (pods.name, pods.group_version, pods.short_names) == ("pods", "v1", ["po"])
    assert set(pods.subresources) == {"eviction", "exec", "log", "status"}
    assert client.version["kubernetes"]["gitVersion"] == res.DEFAULT_GIT_VERSION
    assert_python_discovery(paths(document_server.take()))
    listed = client.get(pods, namespace="ns")
    assert [item.metadata.name for item in listed.items] == ["pod-a", "pod-b"]


def test_kubernetes_core_discoverer(document_server: DocumentServer, tmp_path: Path) -> None:
    discovery = pytest.importorskip("ansible_collections.kubernetes.core.plugins.module_utils.client.discovery")
    dynamic_client = pytest.importorskip("ansible_collections.kubernetes.core.plugins.module_utils.k8sdynamicclient")
    from kubernetes import client as k8s_client

    configuration = k8s_client.Configuration()
    configuration.host = document_server.url
    document_server.take()
    client = dynamic_client.K8SDynamicClient(k8s_client.ApiClient(configuration), cache_file=str(tmp_path / "k8srcp.json"), discoverer=discovery.LazyDiscoverer)
    statefulsets = client.resources.get(api_version="apps/v1", kind="StatefulSet")
    assert statefulsets.namespaced and set(statefulsets.subresources) == {"scale", "status"}
    assert client.resources.get(api_version="v1", kind="ConfigMap").name == "configmaps"
    assert_python_discovery(paths(document_server.take()))
