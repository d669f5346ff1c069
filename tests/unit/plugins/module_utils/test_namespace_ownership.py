# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whose namespace it is: created only when missing, deleted only when the role created it for the
last cluster it holds and nothing else is left; the annotation read is data."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.dbonk8s.postgresql.plugins.filter.namespace import pg_namespace_deploy_plan, pg_namespace_teardown_plan
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._namespace_ownership import (
    OwnersAnnotationError,
    deploy_plan,
    leftovers,
    owners,
    teardown_plan,
)

POINTER = "/metadata/annotations/dbonk8s.io~1clusters"


def namespace(clusters: str | None = None, **extra) -> dict:
    metadata = {"name": "apps", "labels": {"team": "web"}, **extra}
    if clusters is not None:
        metadata["annotations"] = {"dbonk8s.io/clusters": clusters, "other": "kept"}
    return {"kind": "Namespace", "metadata": metadata}


def obj(kind: str, name: str, **labels: str) -> dict:
    return {"kind": kind, "metadata": {"name": name, "labels": labels}}


def ours(kind: str, name: str, instance: str) -> dict:
    return obj(kind, name, **{"app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": instance})


@pytest.mark.parametrize(
    "value, expected",
    [("pg-a", ["pg-a"]), ("pg-b,pg-a", ["pg-a", "pg-b"]), (" pg-a , pg-b ", ["pg-a", "pg-b"]), ("", []), ("pg-a,pg-a", ["pg-a"])],
)
def test_a_list_of_cluster_names_is_read(value, expected):
    assert owners(namespace(value)) == expected


def test_a_namespace_without_the_annotation_was_not_created_by_the_role():
    assert owners(namespace()) is None
    assert owners({"metadata": {"annotations": {"app.kubernetes.io/managed-by": "dbonk8s.postgresql"}}}) is None


@pytest.mark.parametrize("value", ["pg-a;rm -rf /", "PG", "pg-a,,pg-b", "-pg", "a" * 64, 7, "pg a"])
def test_anything_but_cluster_names_is_refused(value):
    with pytest.raises(OwnersAnnotationError):
        owners(namespace(value))


def test_a_missing_namespace_is_created_with_the_cluster_listed_and_labelled():
    plan = deploy_plan(None, "pg-a", manage=False)
    assert plan["create"] and plan["labels"] and plan["created_by_role"]
    assert plan["annotations"] == {"dbonk8s.io/clusters": "pg-a"}
    assert plan["patch"] == [] and plan["error"] == ""


@pytest.mark.parametrize("manage", [False, True])
def test_an_existing_namespace_is_labelled_only_when_managed(manage):
    plan = deploy_plan(namespace(), "pg-a", manage=manage)
    assert not plan["create"] and not plan["created_by_role"] and plan["patch"] == []
    assert plan["labels"] is manage


def test_a_second_cluster_is_added_with_a_test_of_the_value_read():
    plan = deploy_plan(namespace("pg-a"), "pg-b", manage=False)
    assert not plan["create"] and plan["created_by_role"] and not plan["labels"]
    assert plan["patch"] == [{"op": "test", "path": POINTER, "value": "pg-a"}, {"op": "replace", "path": POINTER, "value": "pg-a,pg-b"}]


def test_a_listed_cluster_changes_nothing():
    assert deploy_plan(namespace("pg-a,pg-b"), "pg-b", manage=False)["patch"] == []


def test_a_malformed_annotation_stops_the_deploy_with_nothing_to_change():
    plan = deploy_plan(namespace("pg-a;x"), "pg-a", manage=True)
    assert "dbonk8s.io/clusters" in plan["error"] and "nothing was changed" in plan["error"]
    assert not plan["create"] and not plan["labels"] and plan["patch"] == []


def test_the_last_cluster_of_an_empty_namespace_the_role_created_deletes_it():
    remaining = [obj("ConfigMap", "kube-root-ca.crt"), obj("ServiceAccount", "default"), ours("Pod", "pg-a-0", "pg-a")]
    assert teardown_plan(namespace("pg-a"), "pg-a", remaining) == {"delete": True, "patch": [], "kept": ""}


def test_a_namespace_the_role_did_not_create_is_kept():
    plan = teardown_plan(namespace(), "pg-a", [])
    assert not plan["delete"] and plan["patch"] == []
    assert "did not create it" in plan["kept"]


def test_another_cluster_keeps_the_namespace_and_this_one_is_taken_off():
    plan = teardown_plan(namespace("pg-a,pg-b"), "pg-a", [ours("StatefulSet", "pg-b", "pg-b")])
    assert not plan["delete"]
    assert plan["patch"] == [{"op": "test", "path": POINTER, "value": "pg-a,pg-b"}, {"op": "replace", "path": POINTER, "value": "pg-b"}]
    assert plan["kept"] == "Namespace apps was kept: it holds the clusters pg-b."


def test_other_objects_keep_the_namespace_and_are_named():
    remaining = [obj("Deployment", "web"), obj("ConfigMap", "web-config"), ours("Service", "pg-a-rw", "pg-a")]
    plan = teardown_plan(namespace("pg-a"), "pg-a", remaining)
    assert not plan["delete"]
    assert plan["patch"][-1] == {"op": "replace", "path": POINTER, "value": ""}
    assert plan["kept"] == "Namespace apps was kept: it holds objects the role did not create: ConfigMap/web-config, Deployment/web."


def test_our_labels_with_another_instance_are_something_else():
    # Labelled like a cluster that the namespace does not list: not the role's to count as its own.
    plan = teardown_plan(namespace("pg-a"), "pg-a", [ours("ConfigMap", "pg-c-config", "pg-c")])
    assert not plan["delete"] and "ConfigMap/pg-c-config" in plan["kept"]


def test_a_cluster_not_listed_keeps_the_namespace_untouched():
    plan = teardown_plan(namespace("pg-b"), "pg-a", [])
    assert not plan["delete"] and plan["patch"] == [] and "does not list cluster pg-a" in plan["kept"]


def test_a_malformed_annotation_keeps_the_namespace():
    plan = teardown_plan(namespace("pg-a,../x"), "pg-a", [])
    assert not plan["delete"] and plan["patch"] == [] and "cannot tell whether it created it" in plan["kept"]


def test_a_namespace_gone_or_going_needs_nothing():
    assert teardown_plan(None, "pg-a", []) == {"delete": False, "patch": [], "kept": ""}
    going = teardown_plan(namespace("pg-a", deletionTimestamp="2026-12-02T00:00:00Z"), "pg-a", [])
    assert not going["delete"] and "being deleted" in going["kept"]


def test_objects_being_deleted_do_not_count():
    going = {"kind": "Pod", "metadata": {"name": "web-1", "deletionTimestamp": "2026-12-02T00:00:00Z"}}
    assert leftovers([going, obj("Pod", "web-2")], ["pg-a"]) == ["Pod/web-2"]


def test_many_leftovers_are_summed_up():
    plan = teardown_plan(namespace("pg-a"), "pg-a", [obj("ConfigMap", f"c{i:02}") for i in range(13)])
    assert plan["kept"].endswith("ConfigMap/c09 and 3 more.")


def test_the_filters_accept_what_k8s_info_returns():
    assert pg_namespace_deploy_plan([], "pg-a")["create"] is True
    assert pg_namespace_deploy_plan([namespace("pg-a")], "pg-a", "no")["create"] is False
    assert pg_namespace_teardown_plan([namespace("pg-a")], "pg-a")["delete"] is True


@pytest.mark.parametrize(
    "call",
    [
        lambda: pg_namespace_deploy_plan("apps", "pg-a"),
        lambda: pg_namespace_deploy_plan([], ""),
        lambda: pg_namespace_deploy_plan([], "pg-a", "maybe"),
        lambda: pg_namespace_teardown_plan([], "pg-a", "ConfigMap/x"),
        lambda: pg_namespace_teardown_plan([], "pg-a", ["ConfigMap/x"]),
    ],
)
def test_the_filters_refuse_what_is_not_their_input(call):
    with pytest.raises(AnsibleFilterError):
        call()
