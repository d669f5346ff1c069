"""Pure tests of the local API server's patch flavours and server-side apply (no server involved).

Expected values follow what the real kube-apiserver answers: strategic merge patch ordering and directives,
evanphx/json-patch's errors mapped to 400/422, and structured-merge-diff's ownership, pruning and conflicts.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.localpods.api.apply import (
    LAST_APPLIED_ANNOTATION,
    UPDATE,
    apply,
    build_last_applied,
    field_set,
    owned_fields,
    parse_fields_v1,
    path_string,
    record_update,
)
from tests.localpods.api.errors import ApiError
from tests.localpods.api.patches import json_patch, list_field, merge_patch, strategic_merge_patch

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:05:00Z"
T2 = "2024-05-01T10:10:00Z"


def owned(obj: dict[str, Any], manager: str, operation: str = "Apply", subresource: str = "") -> set[str]:
    return {path_string(path) for path in owned_fields(obj, manager, operation, subresource)}


def managers(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["manager"], entry["operation"]) for entry in obj["metadata"].get("managedFields", [])]


def deployment(image: str = "nginx:1.25", replicas: int = 2, **container_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}], **container_extra}]},
            },
        },
    }


def config_map(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": dict(data)}


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": list(containers)}}


# --- JSON merge patch --------------------------------------------------------------------------------------------


def test_merge_patch_merges_maps_deletes_nulls_and_replaces_lists() -> None:
    target = {"a": {"b": 1, "c": 2}, "list": [1, 2], "keep": True}
    original = copy.deepcopy(target)
    result = merge_patch(target, {"a": {"b": None, "d": {"x": None, "y": 3}}, "list": [3], "new": "v"})
    assert result == {"a": {"c": 2, "d": {"y": 3}}, "list": [3], "keep": True, "new": "v"}
    assert target == original


def test_merge_patch_rfc7386_examples() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({"a": "foo"}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


@pytest.mark.parametrize("patch", [None, "text", 3])
def test_merge_patch_rejects_non_object_patches_like_the_apiserver(patch: Any) -> None:
    with pytest.raises(ApiError) as raised:
        merge_patch({"a": 1}, patch)
    assert (raised.value.status, raised.value.reason, raised.value.message) == (400, "BadRequest", "Invalid JSON Patch")


# --- strategic merge patch ---------------------------------------------------------------------------------------


def test_strategic_patch_merges_containers_by_name_and_keeps_the_others() -> None:
    live = deployment()
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}}
    result = strategic_merge_patch(live, patch)
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("nginx", "nginx:1.26"), ("sidecar", "busybox")]
    assert containers[0]["ports"] == [{"containerPort": 80}]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_strategic_patch_puts_new_items_before_live_only_ones_as_upstream_does() -> None:
    live = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    result = strategic_merge_patch(live, {"spec": {"containers": [{"name": "c", "image": "z"}]}})
    assert [c["name"] for c in result["spec"]["containers"]] == ["c", "a", "b"]


def test_strategic_patch_set_element_order_decides_the_order() -> None:
    live = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}], "containers": [{"name": "c", "image": "z"}]}}
    result = strategic_merge_patch(live, patch)
    assert [c["name"] for c in result["spec"]["containers"]] == ["a", "b", "c"]
    assert "$setElementOrder/containers" not in result["spec"]


def test_strategic_patch_delete_directive_removes_the_keyed_item() -> None:
    live = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    result = strategic_merge_patch(live, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})
    assert result["spec"]["containers"] == [{"name": "b", "image": "y"}]


def test_strategic_patch_replace_directives_in_lists_and_maps_and_delete_in_maps() -> None:
    live = pod({"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}, {"name": "b", "image": "y"})
    replaced = strategic_merge_patch(live, {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "z"}]}})
    assert replaced["spec"]["containers"] == [{"name": "only", "image": "z"}]
    resources = {"$patch": "replace", "limits": {"memory": "1Gi"}}
    map_replaced = strategic_merge_patch(live, {"spec": {"containers": [{"name": "a", "resources": resources}]}})
    assert map_replaced["spec"]["containers"][0]["resources"] == {"limits": {"memory": "1Gi"}}
    map_deleted = strategic_merge_patch(live, {"spec": {"containers": [{"name": "a", "resources": {"$patch": "delete"}}]}})
    assert map_deleted["spec"]["containers"][0]["resources"] == {}


def test_strategic_patch_merge_keys_of_nested_lists() -> None:
    live = pod(
        {
            "name": "app",
            "image": "x",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "ports": [{"containerPort": 80, "name": "http"}],
        }
    )
    live["spec"]["tolerations"] = [{"key": "k1", "operator": "Exists"}]
    patch = {
        "spec": {
            "tolerations": [{"key": "k2", "operator": "Exists"}],
            "containers": [
                {
                    "name": "app",
                    "env": [{"name": "B", "value": "3"}],
                    "volumeMounts": [{"name": "logs", "mountPath": "/data", "readOnly": True}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                }
            ],
        }
    }
    container = strategic_merge_patch(live, patch)["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert container["volumeMounts"] == [{"name": "logs", "mountPath": "/data", "readOnly": True}]
    assert container["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    assert strategic_merge_patch(live, patch)["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]


def test_strategic_patch_uses_the_path_of_each_kind() -> None:
    cron_job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}}},
    }
    patch = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}}}}
    containers = strategic_merge_patch(cron_job, patch)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]
    # The same shape under a ConfigMap is not a pod spec: the list is replaced.
    not_a_pod = {**cron_job, "kind": "ConfigMap"}
    assert strategic_merge_patch(not_a_pod, patch)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] == [{"name": "b", "image": "z"}]
    assert list_field("Service", ("spec", "ports")).merge_key == "port"
    assert list_field("StatefulSet", ("spec", "template", "spec", "containers", "volumeMounts")).merge_key == "mountPath"


def test_strategic_patch_service_ports_merge_by_port() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]},
    }
    result = strategic_merge_patch(service, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}})
    assert result["spec"]["ports"] == [{"port": 80, "name": "http"}, {"port": 443, "name": "https", "targetPort": 8443}]


def test_strategic_patch_primitive_merge_lists_and_delete_from_primitive_list() -> None:
    live = config_map(a="1")
    live["metadata"]["finalizers"] = ["x", "y"]
    added = strategic_merge_patch(live, {"metadata": {"finalizers": ["y", "z"]}})
    assert sorted(added["metadata"]["finalizers"]) == ["x", "y", "z"]
    removed = strategic_merge_patch(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert removed["metadata"]["finalizers"] == ["y"]


def test_strategic_patch_nulls_delete_and_retain_keys_clears_the_rest() -> None:
    live = deployment()
    live["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    result = strategic_merge_patch(live, {"metadata": {"labels": {"app": None}}, "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert result["metadata"]["labels"] == {}
    assert result["spec"]["strategy"] == {"type": "Recreate"}


def test_strategic_patch_errors_use_the_apiserver_status() -> None:
    live = pod({"name": "a", "image": "x"})
    with pytest.raises(ApiError) as missing_key:
        strategic_merge_patch(live, {"spec": {"containers": [{"image": "y"}]}})
    assert missing_key.value.status == 500
    assert missing_key.value.message == "map: map[image:y] does not contain declared merge key: name"
    with pytest.raises(ApiError) as retain_keys:
        strategic_merge_patch(live, {"spec": {"$retainKeys": ["containers"], "hostname": "h"}})
    assert (retain_keys.value.status, retain_keys.value.message) == (400, "invalid patch format of retainKeys")


# --- JSON patch --------------------------------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    target = {"metadata": {"labels": {"a/b": "1", "m~n": "2"}}, "items": [1, 2, 3]}
    operations = [
        {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
        {"op": "replace", "path": "/metadata/labels/m~0n", "value": "3"},
        {"op": "add", "path": "/items/-", "value": 4},
        {"op": "add", "path": "/items/0", "value": 0},
        {"op": "remove", "path": "/items/1"},
        {"op": "copy", "from": "/metadata/labels", "path": "/copied"},
        {"op": "move", "from": "/copied/a~1b", "path": "/moved"},
    ]
    result = json_patch(target, operations)
    assert result == {"metadata": {"labels": {"a/b": "1", "m~n": "3"}}, "items": [0, 2, 3, 4], "copied": {"m~n": "3"}, "moved": "1"}
    assert target["items"] == [1, 2, 3]


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "test", "path": "/a", "value": 2},
        {"op": "remove", "path": "/missing"},
        {"op": "replace", "path": "/missing", "value": 1},
        {"op": "add", "path": "/missing/child", "value": 1},
        {"op": "add", "path": "/list/5", "value": 1},
        {"op": "move", "from": "/missing", "path": "/b"},
        {"op": "frobnicate", "path": "/a"},
        {"op": "test", "path": "/flag", "value": 1},
    ],
)
def test_json_patch_failures_are_422_invalid(operation: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as raised:
        json_patch({"a": 1, "list": [1], "flag": True}, [operation])
    assert (raised.value.status, raised.value.reason) == (422, "Invalid")
    assert raised.value.message == "the server rejected our request due to an error in our request"


def test_json_patch_malformed_bodies_are_400_and_huge_ones_413() -> None:
    with pytest.raises(ApiError) as not_a_list:
        json_patch({}, {"op": "add"})
    assert (not_a_list.value.status, not_a_list.value.message) == (400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    with pytest.raises(ApiError) as not_objects:
        json_patch({}, ["add"])
    assert not_objects.value.status == 400
    with pytest.raises(ApiError) as too_many:
        json_patch({}, [{"op": "test", "path": "/a", "value": None}] * 10001)
    assert too_many.value.status == 413


# --- server-side apply -------------------------------------------------------------------------------------------


def test_apply_create_records_the_applied_fields() -> None:
    config = deployment()
    created = apply(None, config, "kubectl", False, T0)
    assert created is not config and "managedFields" not in config["metadata"]
    (entry,) = created["metadata"]["managedFields"]
    assert {key: entry[key] for key in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    container = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert container == {".": {}, "f:image": {}, "f:name": {}, "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}
    assert entry["fieldsV1"]["f:spec"]["f:selector"] == {}
    assert "f:name" not in entry["fieldsV1"]["f:metadata"]
    assert entry["fieldsV1"] == field_set(config, "Deployment")


def test_identical_second_apply_is_a_no_op_returning_live() -> None:
    live = apply(None, deployment(), "kubectl", False, T0)
    live["metadata"]["resourceVersion"] = "7"
    again = apply(live, deployment(), "kubectl", False, T1)
    assert again is live
    assert again["metadata"]["managedFields"][0]["time"] == T0


def test_changed_apply_updates_the_object_and_the_time() -> None:
    live = apply(None, deployment(), "kubectl", False, T0)
    changed = apply(live, deployment(image="nginx:1.26"), "kubectl", False, T1)
    assert changed["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert changed["metadata"]["managedFields"][0]["time"] == T1
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_apply_conflict_with_another_applier() -> None:
    live = apply(None, config_map(mode="a"), "first", False, T0)
    with pytest.raises(ApiError) as raised:
        apply(live, config_map(mode="b"), "second", False, T1)
    error = raised.value
    assert (error.status, error.reason) == (409, "Conflict")
    assert error.message == 'Apply failed with 1 conflict: conflict with "first": .data.mode'
    assert error.details == {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "first"', "field": ".data.mode"}]}


def test_apply_conflicts_with_update_managers_name_their_version_and_list_every_field() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}], "type": "NodePort"},
    }
    live = record_update(None, service, "kubectl-client-side-apply", T0)
    edited = copy.deepcopy(live)
    edited["spec"]["ports"][0]["targetPort"] = 1
    edited["spec"]["sessionAffinity"] = "ClientIP"
    live = record_update(live, edited, "kubectl-edit", T1)

    with pytest.raises(ApiError) as single:
        apply(live, {**service, "spec": {"selector": {"app": "other"}}}, "ansible", False, T2)
    assert single.value.message == 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .spec.selector'

    # Same values (type, the port itself) are shared; different ones conflict with whoever owns them.
    config = copy.deepcopy(service)
    config["spec"].update(selector={"app": "other"}, sessionAffinity="None", ports=[{"port": 5432, "targetPort": 5433}])
    with pytest.raises(ApiError) as several:
        apply(live, config, "ansible", False, T2)
    assert several.value.message == (
        "Apply failed with 3 conflicts: "
        'conflicts with "kubectl-client-side-apply" using v1:\n- .spec.selector\n'
        'conflicts with "kubectl-edit" using v1:\n- .spec.sessionAffinity\n- .spec.ports[port=5432,protocol="TCP"].targetPort'
    )
    assert several.value.details == {
        "causes": [
            {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-client-side-apply" using v1', "field": ".spec.selector"},
            {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-edit" using v1', "field": ".spec.sessionAffinity"},
            {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-edit" using v1', "field": '.spec.ports[port=5432,protocol="TCP"].targetPort'},
        ]
    }
    forced = apply(live, config, "ansible", True, T2)
    assert owned(forced, "kubectl-edit", UPDATE) == set()
    assert ".spec.type" in owned(forced, "kubectl-client-side-apply", UPDATE) and ".spec.type" in owned(forced, "ansible")


def test_force_moves_ownership_to_the_applier() -> None:
    live = apply(None, config_map(mode="a", other="x"), "first", False, T0)
    forced = apply(live, config_map(mode="b"), "second", True, T1)
    assert forced["data"] == {"mode": "b", "other": "x"}
    assert owned(forced, "first") == {".data.other"}
    assert owned(forced, "second") == {".data.mode"}


def test_same_value_is_shared_without_conflict() -> None:
    live = apply(None, config_map(mode="a", other="x"), "first", False, T0)
    shared = apply(live, config_map(mode="a"), "second", False, T1)
    assert owned(shared, "first") == {".data.mode", ".data.other"}
    assert owned(shared, "second") == {".data.mode"}


def test_field_dropped_from_the_configuration_is_removed() -> None:
    live = apply(None, config_map(mode="a", other="x"), "first", False, T0)
    pruned = apply(live, config_map(mode="a"), "first", False, T1)
    assert pruned["data"] == {"mode": "a"}
    assert owned(pruned, "first") == {".data.mode"}
    emptied = apply(pruned, config_map(), "first", False, T2)
    assert "data" not in emptied


def test_co_owned_field_stays_when_one_manager_drops_it() -> None:
    live = apply(None, config_map(mode="a"), "first", False, T0)
    live = apply(live, config_map(mode="a"), "second", False, T1)
    dropped = apply(live, config_map(), "first", False, T2)
    assert dropped["data"] == {"mode": "a"}
    assert owned(dropped, "second") == {".data.mode"}
    assert managers(dropped) == [("second", "Apply")]


def test_field_owned_by_an_updater_survives_the_applier_dropping_it() -> None:
    live = apply(None, config_map(mode="a", other="x"), "first", False, T0)
    edited = record_update(live, {**live, "data": {"mode": "a", "other": "y"}}, "kubectl-edit", T1)
    assert owned(edited, "first") == {".data.mode"}
    assert owned(edited, "kubectl-edit", UPDATE) == {".data.other"}
    dropped = apply(edited, config_map(mode="a"), "first", False, T2)
    assert dropped["data"] == {"mode": "a", "other": "y"}


def test_removed_list_item_is_pruned_with_its_fields() -> None:
    two = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    live = apply(None, two, "first", False, T0)
    one = apply(live, pod({"name": "a", "image": "x"}), "first", False, T1)
    assert one["spec"]["containers"] == [{"name": "a", "image": "x"}]
    assert owned(one, "first") == {'.spec.containers[name="a"]', '.spec.containers[name="a"].name', '.spec.containers[name="a"].image'}


def test_keyed_list_conflicts_are_per_item() -> None:
    live = apply(None, pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"}), "first", False, T0)
    live = apply(live, pod({"name": "b", "image": "y2"}), "second", True, T1)
    assert owned(live, "second") == {'.spec.containers[name="b"]', '.spec.containers[name="b"].name', '.spec.containers[name="b"].image'}
    unchanged_a = apply(live, pod({"name": "a", "image": "x"}, {"name": "b", "image": "y2"}), "first", False, T2)
    assert [c["image"] for c in unchanged_a["spec"]["containers"]] == ["x", "y2"]
    with pytest.raises(ApiError) as raised:
        apply(live, pod({"name": "a", "image": "x2"}, {"name": "b", "image": "y3"}), "first", False, T2)
    assert raised.value.message == 'Apply failed with 1 conflict: conflict with "second": .spec.containers[name="b"].image'


def test_apply_merges_keyed_lists_and_keeps_items_others_added() -> None:
    live = record_update(None, pod({"name": "sidecar", "image": "s"}, {"name": "app", "image": "x"}), "kubectl-create", T0)
    applied = apply(live, pod({"name": "app", "image": "x"}, {"name": "extra", "image": "e"}), "ansible", False, T1)
    assert [c["name"] for c in applied["spec"]["containers"]] == ["sidecar", "app", "extra"]


def test_apply_rejects_managed_fields_and_version_mismatches() -> None:
    with pytest.raises(ApiError) as managed:
        apply(None, {**config_map(), "metadata": {"name": "x", "managedFields": []}}, "m", False, T0)
    assert (managed.value.status, managed.value.message) == (400, "metadata.managedFields must be nil")
    live = apply(None, deployment(), "m", False, T0)
    with pytest.raises(ApiError) as version:
        apply(live, {**deployment(), "apiVersion": "apps/v1beta1"}, "m", False, T1)
    assert version.value.message == "Incorrect version specified in apply patch. Specified patch version: apps/v1beta1, expected: apps/v1"
    with pytest.raises(ApiError) as keyless:
        apply(None, pod({"image": "x"}), "m", False, T0)
    assert keyless.value.status == 500 and 'omits key field "name"' in keyless.value.message


def test_kubectl_takes_over_client_side_applied_fields_without_force() -> None:
    config = config_map(mode="a")
    last_applied = build_last_applied(config)
    created = record_update(
        None, {**config, "metadata": {**config["metadata"], "annotations": {LAST_APPLIED_ANNOTATION: last_applied}}}, "kubectl-client-side-apply", T0
    )
    upgraded = apply(created, config_map(mode="b"), "kubectl", False, T1)
    assert upgraded["data"] == {"mode": "b"}
    assert json.loads(upgraded["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]) == config_map(mode="b")
    with pytest.raises(ApiError):
        apply(created, config_map(mode="b"), "someone-else", False, T1)


# --- updates -----------------------------------------------------------------------------------------------------


def test_record_update_on_create_marks_added_maps_and_items() -> None:
    created = record_update(None, deployment(), "kubectl-create", T0)
    (entry,) = created["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["time"]) == ("kubectl-create", "Update", T0)
    spec = entry["fieldsV1"]["f:spec"]
    assert "." not in spec and "." not in spec["f:template"]["f:spec"]["f:containers"]
    assert spec["f:template"]["f:metadata"]["f:labels"] == {".": {}, "f:app": {}}
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}


def test_record_update_moves_ownership_and_never_conflicts() -> None:
    live = apply(None, deployment(), "ansible", False, T0)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    updated = record_update(live, scaled, "kube-controller-manager", T1)
    assert owned(updated, "kube-controller-manager", UPDATE) == {".spec.replicas"}
    assert ".spec.replicas" not in owned(updated, "ansible")
    assert managers(updated) == [("ansible", "Apply"), ("kube-controller-manager", "Update")]
    # The applier now conflicts on the field it lost.
    with pytest.raises(ApiError) as raised:
        apply(updated, deployment(), "ansible", False, T2)
    assert raised.value.message == 'Apply failed with 1 conflict: conflict with "kube-controller-manager" using apps/v1: .spec.replicas'


def test_record_update_of_an_unchanged_object_keeps_managed_fields() -> None:
    live = apply(None, deployment(), "ansible", False, T0)
    same = record_update(live, copy.deepcopy(live), "kubectl-edit", T1)
    assert same["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_record_update_drops_emptied_entries_and_honours_a_reset() -> None:
    live = record_update(None, config_map(mode="a"), "creator", T0)
    modified = record_update(live, {**live, "data": {"mode": "b"}}, "editor", T1)
    # The creator added the data map itself, so it keeps owning the map while the editor owns the value.
    assert (owned(modified, "creator", UPDATE), owned(modified, "editor", UPDATE)) == ({".data"}, {".data.mode"})
    replaced = record_update(modified, {key: value for key, value in modified.items() if key != "data"} | {"binaryData": {"k": "AA=="}}, "editor", T2)
    assert managers(replaced) == [("editor", "Update")]
    assert owned(replaced, "editor", UPDATE) == {".binaryData", ".binaryData.k"}
    reset = record_update(replaced, {**replaced, "metadata": {**replaced["metadata"], "managedFields": [{}]}, "data": {"mode": "c"}}, "resetter", T2)
    assert managers(reset) == [("resetter", "Update")]


def test_status_writes_record_only_status_under_the_subresource() -> None:
    live = apply(None, deployment(), "ansible", False, T0)
    with_status = copy.deepcopy(live)
    with_status["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    updated = record_update(live, with_status, "kube-controller-manager", T1, subresource="status")
    entry = updated["metadata"]["managedFields"][-1]
    assert (entry["manager"], entry["subresource"]) == ("kube-controller-manager", "status")
    paths = {path_string(path) for path in parse_fields_v1(entry["fieldsV1"])}
    assert paths == {
        ".status.replicas",
        ".status.conditions",
        '.status.conditions[type="Available"]',
        '.status.conditions[type="Available"].type',
        '.status.conditions[type="Available"].status',
    }
    assert owned(updated, "ansible") == owned(live, "ansible")
