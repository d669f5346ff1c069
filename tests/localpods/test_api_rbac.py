"""Tests of the local API server's RBAC authorizer: rule matching, bindings, the bootstrap policy, 403s and reviews."""

from __future__ import annotations

from typing import Any

import pytest

from tests.localpods.api import rbac
from tests.localpods.api.errors import ApiError
from tests.localpods.api.rbac import Request, User, access_review, authorize, forbidden, rules_review, service_account_user

NS = "ns"
OTHER = "other"
SA = service_account_user(NS, "sa")
ALICE = rbac.authenticated_user("alice")

_NAMESPACED = {"Role", "RoleBinding"}


def store(*items: dict) -> rbac.Objects:
    """An objects callback over a fixed list, filtering by kind and namespace like the file store does."""

    def objects(kind: str, namespace: str | None) -> list[dict]:
        found = []
        for item in items:
            if item["kind"] != kind:
                continue
            if kind in _NAMESPACED and item["metadata"].get("namespace") != namespace:
                continue
            found.append(item)
        return found

    return objects


def rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None, names: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": verbs, "apiGroups": [""] if groups is None else groups, "resources": resources or []}
    if names:
        out["resourceNames"] = names
    return out


def role(name: str, rules: list[dict], namespace: str = NS) -> dict:
    return {"kind": "Role", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": name, "namespace": namespace}, "rules": rules}


def cluster_role(name: str, rules: list[dict], labels: dict[str, str] | None = None) -> dict:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": metadata, "rules": rules}


def sa_subject(name: str = "sa", namespace: str | None = NS) -> dict:
    subject = {"kind": "ServiceAccount", "name": name}
    if namespace is not None:
        subject["namespace"] = namespace
    return subject


def user_subject(name: str) -> dict:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def group_subject(name: str) -> dict:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def role_binding(name: str, ref_kind: str, ref_name: str, subjects: list[dict], namespace: str = NS) -> dict:
    return {
        "kind": "RoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
        "subjects": subjects,
    }


def cluster_role_binding(name: str, ref_name: str, subjects: list[dict]) -> dict:
    return {
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ref_name},
        "subjects": subjects,
    }


def allowed(user: User, request: Request, objects: rbac.Objects) -> bool:
    return authorize(user, request, objects)[0]


def pods(verb: str, name: str = "", namespace: str = NS, subresource: str = "") -> Request:
    return Request(verb=verb, resource="pods", subresource=subresource, namespace=namespace, name=name)


# Users.


def test_service_account_user_has_upstream_name_and_groups() -> None:
    assert SA == User("system:serviceaccount:ns:sa", ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"))


def test_authenticated_user_adds_the_authenticated_group_once() -> None:
    assert rbac.authenticated_user("bob", ["devs"]).groups == ("devs", "system:authenticated")
    assert rbac.authenticated_user("bob", ["system:authenticated"]).groups == ("system:authenticated",)


# Rule features.


def test_a_verb_missing_from_the_role_refuses_that_verb_only() -> None:
    objects = store(role("reader", [rule(["get", "list"], resources=["pods"])]), role_binding("rb", "Role", "reader", [sa_subject()]))
    assert allowed(SA, pods("get", "postgres-0"), objects)
    assert allowed(SA, pods("list"), objects)
    assert not allowed(SA, pods("delete", "postgres-0"), objects)
    assert not allowed(SA, pods("watch"), objects)


def test_verb_star_grants_every_verb() -> None:
    objects = store(role("all", [rule(["*"], resources=["pods"])]), role_binding("rb", "Role", "all", [sa_subject()]))
    assert allowed(SA, pods("deletecollection"), objects)
    assert not allowed(SA, Request(verb="get", resource="services", namespace=NS), objects)


def test_resource_names_limit_get_but_never_grant_list_watch_or_create() -> None:
    objects = store(
        role("one-secret", [rule(["get", "list", "watch", "create", "update"], resources=["secrets"], names=["pg-secret"])]),
        role_binding("rb", "Role", "one-secret", [sa_subject()]),
    )

    def secrets(verb: str, name: str = "") -> Request:
        return Request(verb=verb, resource="secrets", namespace=NS, name=name)

    assert allowed(SA, secrets("get", "pg-secret"), objects)
    assert allowed(SA, secrets("update", "pg-secret"), objects)
    assert not allowed(SA, secrets("get", "other-secret"), objects)
    assert not allowed(SA, secrets("list"), objects)
    assert not allowed(SA, secrets("watch"), objects)
    assert not allowed(SA, secrets("create"), objects)
    # A list or watch narrowed to one object by fieldSelector=metadata.name carries that name, as the server parses it.
    assert allowed(SA, secrets("watch", "pg-secret"), objects)


def test_a_subresource_rule_does_not_grant_the_resource_or_other_subresources() -> None:
    objects = store(role("exec", [rule(["create", "get"], resources=["pods/exec"])]), role_binding("rb", "Role", "exec", [sa_subject()]))
    assert allowed(SA, pods("create", "postgres-0", subresource="exec"), objects)
    assert not allowed(SA, pods("create", "postgres-0"), objects)
    assert not allowed(SA, pods("get", "postgres-0"), objects)
    assert not allowed(SA, pods("get", "postgres-0", subresource="log"), objects)


def test_a_resource_rule_does_not_grant_its_subresources() -> None:
    objects = store(role("pods", [rule(["*"], resources=["pods"])]), role_binding("rb", "Role", "pods", [sa_subject()]))
    assert allowed(SA, pods("get", "postgres-0"), objects)
    assert not allowed(SA, pods("create", "postgres-0", subresource="exec"), objects)


def test_resource_star_and_star_slash_subresource() -> None:
    objects = store(
        role("any", [rule(["get"], ["*"], ["*"])]),
        role("scaler", [rule(["update"], ["apps"], ["*/scale"])]),
        role_binding("rb-any", "Role", "any", [sa_subject()]),
        role_binding("rb-scale", "Role", "scaler", [sa_subject()]),
    )
    assert allowed(SA, Request(verb="get", api_group="apps", resource="statefulsets", namespace=NS, name="pg"), objects)
    assert allowed(SA, pods("get", "postgres-0", subresource="log"), objects)
    assert allowed(SA, Request(verb="update", api_group="apps", resource="statefulsets", subresource="scale", namespace=NS, name="pg"), objects)
    assert not allowed(SA, Request(verb="update", api_group="apps", resource="statefulsets", namespace=NS, name="pg"), objects)
    assert not allowed(SA, Request(verb="update", api_group="apps", resource="statefulsets", subresource="status", namespace=NS, name="pg"), objects)
    assert not allowed(SA, Request(verb="update", api_group="", resource="replicationcontrollers", subresource="scale", namespace=NS, name="rc"), objects)


def test_api_groups_must_match() -> None:
    objects = store(role("sts", [rule(["get"], ["apps"], ["statefulsets"])]), role_binding("rb", "Role", "sts", [sa_subject()]))
    assert allowed(SA, Request(verb="get", api_group="apps", resource="statefulsets", namespace=NS, name="pg"), objects)
    assert not allowed(SA, Request(verb="get", api_group="", resource="statefulsets", namespace=NS, name="pg"), objects)
    assert not allowed(SA, Request(verb="get", api_group="extensions", resource="statefulsets", namespace=NS, name="pg"), objects)


def test_non_resource_urls_exact_and_trailing_star() -> None:
    objects = store(
        cluster_role("metrics", [{"verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"]}]),
        cluster_role_binding("crb", "metrics", [user_subject("alice")]),
    )
    assert allowed(ALICE, Request(verb="get", path="/metrics"), objects)
    assert allowed(ALICE, Request(verb="get", path="/logs/kube-apiserver.log"), objects)
    assert not allowed(ALICE, Request(verb="get", path="/metrics/slis"), objects)
    assert not allowed(ALICE, Request(verb="post", path="/metrics"), objects)


# Bindings and subjects.


def test_a_role_binding_in_another_namespace_does_not_apply() -> None:
    objects = store(
        role("reader", [rule(["get"], resources=["pods"])], namespace=OTHER),
        role_binding("rb", "Role", "reader", [sa_subject()], namespace=OTHER),
    )
    assert not allowed(SA, pods("get", "postgres-0"), objects)
    assert allowed(SA, pods("get", "postgres-0", namespace=OTHER), objects)


def test_a_role_binding_to_a_role_of_another_namespace_finds_nothing() -> None:
    objects = store(role("reader", [rule(["get"], resources=["pods"])], namespace=OTHER), role_binding("rb", "Role", "reader", [sa_subject()]))
    assert authorize(SA, pods("get", "postgres-0"), objects) == (False, 'RBAC: role.rbac.authorization.k8s.io "reader" not found')


def test_a_role_binding_to_a_cluster_role_grants_only_in_its_namespace() -> None:
    objects = store(cluster_role("pod-reader", [rule(["get", "list"], resources=["pods"])]), role_binding("rb", "ClusterRole", "pod-reader", [sa_subject()]))
    assert allowed(SA, pods("get", "postgres-0"), objects)
    assert not allowed(SA, pods("get", "postgres-0", namespace=OTHER), objects)
    assert not allowed(SA, pods("list", namespace=""), objects)


def test_a_cluster_role_binding_grants_everywhere() -> None:
    objects = store(
        cluster_role("pod-reader", [rule(["get", "list"], resources=["pods"]), rule(["get"], resources=["nodes"])]),
        cluster_role_binding("crb", "pod-reader", [sa_subject()]),
    )
    assert allowed(SA, pods("get", "postgres-0"), objects)
    assert allowed(SA, pods("get", "postgres-0", namespace=OTHER), objects)
    assert allowed(SA, pods("list", namespace=""), objects)
    assert allowed(SA, Request(verb="get", resource="nodes", name="node-1"), objects)
    assert not allowed(SA, Request(verb="delete", resource="nodes", name="node-1"), objects)


def test_group_subjects() -> None:
    objects = store(
        role("reader", [rule(["get"], resources=["pods"])]),
        role_binding("rb", "Role", "reader", [group_subject("system:serviceaccounts:ns")]),
    )
    assert allowed(SA, pods("get", "postgres-0"), objects)
    assert allowed(service_account_user(NS, "another"), pods("get", "postgres-0"), objects)
    assert not allowed(service_account_user(OTHER, "sa"), pods("get", "postgres-0"), objects)
    assert not allowed(ALICE, pods("get", "postgres-0"), objects)


def test_user_subjects_match_the_user_name_only() -> None:
    objects = store(role("reader", [rule(["get"], resources=["pods"])]), role_binding("rb", "Role", "reader", [user_subject("alice")]))
    assert allowed(ALICE, pods("get", "postgres-0"), objects)
    assert not allowed(rbac.authenticated_user("bob", ["alice"]), pods("get", "postgres-0"), objects)


def test_service_account_subjects() -> None:
    reader = role("reader", [rule(["get"], resources=["pods"])])
    # Without a namespace, a RoleBinding's ServiceAccount subject is one of the binding's namespace.
    objects = store(reader, role_binding("rb", "Role", "reader", [sa_subject(namespace=None)]))
    assert allowed(SA, pods("get", "postgres-0"), objects)
    assert not allowed(service_account_user(OTHER, "sa"), pods("get", "postgres-0"), objects)
    # With one, it may name a ServiceAccount of another namespace.
    objects = store(reader, role_binding("rb", "Role", "reader", [sa_subject(namespace=OTHER)]))
    assert allowed(service_account_user(OTHER, "sa"), pods("get", "postgres-0"), objects)
    assert not allowed(SA, pods("get", "postgres-0"), objects)
    # The name must match too.
    assert not allowed(service_account_user(OTHER, "sa2"), pods("get", "postgres-0"), objects)


def test_a_cluster_role_binding_service_account_without_namespace_matches_nobody() -> None:
    objects = store(cluster_role("pod-reader", [rule(["get"], resources=["pods"])]), cluster_role_binding("crb", "pod-reader", [sa_subject(namespace=None)]))
    assert not allowed(SA, pods("get", "postgres-0"), objects)
    objects = store(cluster_role("pod-reader", [rule(["get"], resources=["pods"])]), cluster_role_binding("crb", "pod-reader", [sa_subject()]))
    assert allowed(SA, pods("get", "postgres-0"), objects)


def test_a_binding_without_matching_subject_grants_nothing() -> None:
    objects = store(role("reader", [rule(["get"], resources=["pods"])]), role_binding("rb", "Role", "reader", [sa_subject("someone-else")]))
    assert authorize(SA, pods("get", "postgres-0"), objects) == (False, "")


def test_system_masters_is_allowed_everything_without_a_reason() -> None:
    admin = User("kubernetes-admin", ("system:masters", "system:authenticated"))
    objects = store()
    assert authorize(admin, Request(verb="delete", resource="nodes", name="n"), objects) == (True, "")
    assert authorize(admin, Request(verb="post", path="/anything"), objects) == (True, "")
    assert not allowed(ALICE, Request(verb="delete", resource="nodes", name="n"), objects)


def test_a_stored_cluster_role_binding_to_cluster_admin_allows_everything() -> None:
    objects = store(cluster_role_binding("ops", "cluster-admin", [user_subject("alice")]))
    assert authorize(ALICE, Request(verb="delete", resource="nodes", name="n"), objects) == (
        True,
        'RBAC: allowed by ClusterRoleBinding "ops" of ClusterRole "cluster-admin" to User "alice"',
    )


# The bootstrap policy.


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/apps/v1", "/version", "/healthz", "/livez", "/readyz", "/openapi/v2", "/openapi/v3"])
def test_discovery_is_allowed_to_authenticated_users(path: str) -> None:
    assert allowed(SA, Request(verb="get", path=path), store())
    assert allowed(ALICE, Request(verb="get", path=path), store())


def test_discovery_is_get_only_and_not_everything() -> None:
    assert not allowed(SA, Request(verb="post", path="/api"), store())
    assert not allowed(SA, Request(verb="get", path="/metrics"), store())
    assert not allowed(SA, Request(verb="get", path="/logs"), store())
    assert not allowed(SA, Request(verb="get", path="/"), store())


def test_anonymous_users_see_public_info_only() -> None:
    assert allowed(rbac.ANONYMOUS, Request(verb="get", path="/version"), store())
    assert allowed(rbac.ANONYMOUS, Request(verb="get", path="/healthz"), store())
    assert not allowed(rbac.ANONYMOUS, Request(verb="get", path="/api"), store())
    assert not allowed(rbac.ANONYMOUS, Request(verb="create", api_group="authorization.k8s.io", resource="selfsubjectaccessreviews"), store())


def test_basic_user_may_review_itself() -> None:
    for resource in ("selfsubjectaccessreviews", "selfsubjectrulesreviews"):
        assert authorize(SA, Request(verb="create", api_group="authorization.k8s.io", resource=resource), store()) == (
            True,
            'RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated"',
        )
    assert not allowed(SA, Request(verb="create", api_group="authorization.k8s.io", resource="subjectaccessreviews"), store())


def test_view_role() -> None:
    objects = store(role_binding("viewers", "ClusterRole", "view", [sa_subject()]))
    assert allowed(SA, pods("get", "postgres-0"), objects)
    assert allowed(SA, pods("get", "postgres-0", subresource="log"), objects)
    assert allowed(SA, Request(verb="watch", api_group="apps", resource="statefulsets", namespace=NS), objects)
    assert allowed(SA, Request(verb="list", api_group="policy", resource="poddisruptionbudgets", namespace=NS), objects)
    assert not allowed(SA, Request(verb="list", resource="secrets", namespace=NS), objects)
    assert not allowed(SA, pods("create"), objects)
    assert not allowed(SA, Request(verb="list", api_group="coordination.k8s.io", resource="leases", namespace=NS), objects)


def test_edit_role() -> None:
    objects = store(role_binding("editors", "ClusterRole", "edit", [sa_subject()]))
    assert allowed(SA, pods("create", "postgres-0", subresource="exec"), objects)
    assert allowed(SA, Request(verb="patch", api_group="apps", resource="statefulsets", namespace=NS, name="pg"), objects)
    assert allowed(SA, Request(verb="update", api_group="coordination.k8s.io", resource="leases", namespace=NS, name="leader"), objects)
    assert allowed(SA, Request(verb="get", resource="secrets", namespace=NS, name="pg"), objects)
    assert allowed(SA, pods("get", "postgres-0"), objects)  # through view, which edit aggregates
    assert not allowed(SA, Request(verb="create", api_group="rbac.authorization.k8s.io", resource="roles", namespace=NS), objects)
    assert not allowed(SA, Request(verb="update", resource="resourcequotas", namespace=NS, name="q"), objects)


def test_admin_role_in_a_namespace_only() -> None:
    objects = store(role_binding("admins", "ClusterRole", "admin", [user_subject("alice")]))
    assert allowed(ALICE, Request(verb="create", api_group="rbac.authorization.k8s.io", resource="rolebindings", namespace=NS), objects)
    assert allowed(ALICE, pods("delete", "postgres-0"), objects)
    assert allowed(ALICE, pods("list"), objects)
    assert not allowed(ALICE, pods("list", namespace=OTHER), objects)
    assert not allowed(ALICE, Request(verb="get", resource="nodes", name="n"), objects)


def test_a_stored_cluster_role_labelled_aggregate_to_view_joins_view_edit_and_admin() -> None:
    extra = cluster_role(
        "crd-viewer", [rule(["get", "list"], ["postgresql.dbonk8s.io"], ["clusters"])], {"rbac.authorization.k8s.io/aggregate-to-view": "true"}
    )
    request = Request(verb="list", api_group="postgresql.dbonk8s.io", resource="clusters", namespace=NS)
    for name in ("view", "edit", "admin"):
        assert allowed(SA, request, store(extra, role_binding("rb", "ClusterRole", name, [sa_subject()])))
        assert not allowed(SA, request, store(role_binding("rb", "ClusterRole", name, [sa_subject()])))


def test_a_stored_cluster_role_replaces_the_bootstrap_one_of_the_same_name() -> None:
    objects = store(cluster_role("system:discovery", [{"verbs": ["get"], "nonResourceURLs": ["/version"]}]))
    assert allowed(SA, Request(verb="get", path="/version"), objects)
    assert not allowed(SA, Request(verb="get", path="/apis"), objects)
    assert allowed(SA, Request(verb="get", path="/apis"), store())


def test_bootstrap_objects_are_api_shaped() -> None:
    roles = {r["metadata"]["name"]: r for r in rbac.bootstrap_cluster_roles()}
    bindings = {b["metadata"]["name"]: b for b in rbac.bootstrap_cluster_role_bindings()}
    assert roles["cluster-admin"]["rules"] == [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ]
    assert roles["system:discovery"]["rules"] == [
        {
            "verbs": ["get"],
            "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
        }
    ]
    assert roles["edit"]["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}
    assert roles["view"]["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}
    # admin aggregates edit (which aggregates view) and then its own part, in name order as the controller does.
    assert roles["admin"]["rules"] == roles["edit"]["rules"] + roles["system:aggregate-to-admin"]["rules"]
    assert roles["edit"]["rules"] == roles["system:aggregate-to-edit"]["rules"] + roles["view"]["rules"]
    assert roles["view"]["rules"] == roles["system:aggregate-to-view"]["rules"]
    assert bindings["cluster-admin"]["subjects"] == [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}]
    assert [s["name"] for s in bindings["system:public-info-viewer"]["subjects"]] == ["system:authenticated", "system:unauthenticated"]
    assert [s["name"] for s in bindings["system:discovery"]["subjects"]] == ["system:authenticated"]


# Forbidden.


def test_forbidden_named_subresource_in_a_namespace() -> None:
    error = forbidden(SA, pods("create", "postgres-0", subresource="exec"))
    assert (error.status, error.reason) == (403, "Forbidden")
    assert error.message == (
        'pods "postgres-0" is forbidden: User "system:serviceaccount:ns:sa" cannot create resource "pods/exec" in API group "" in the namespace "ns"'
    )
    assert error.details == {"name": "postgres-0", "kind": "pods"}
    assert error.status_body()["details"] == {"name": "postgres-0", "kind": "pods"}


def test_forbidden_collection() -> None:
    error = forbidden(User("x"), Request(verb="list", resource="services", namespace=NS))
    assert error.message == 'services is forbidden: User "x" cannot list resource "services" in API group "" in the namespace "ns"'
    assert error.details == {"kind": "services"}


def test_forbidden_group_qualified_at_the_cluster_scope() -> None:
    error = forbidden(User("x"), Request(verb="list", api_group="apps", resource="statefulsets"))
    assert error.message == 'statefulsets.apps is forbidden: User "x" cannot list resource "statefulsets" in API group "apps" at the cluster scope'
    assert error.details == {"group": "apps", "kind": "statefulsets"}
    error = forbidden(User("x"), Request(verb="get", resource="nodes", name="node-1"))
    assert error.message == 'nodes "node-1" is forbidden: User "x" cannot get resource "nodes" in API group "" at the cluster scope'


def test_forbidden_non_resource_path() -> None:
    error = forbidden(User("x"), Request(verb="get", path="/apis"))
    assert error.message == 'forbidden: User "x" cannot get path "/apis"'
    assert not error.details


def test_forbidden_carries_the_rbac_reason_and_escapes_markup() -> None:
    objects = store(role_binding("rb", "Role", "missing", [sa_subject()]), cluster_role_binding("crb", "gone", [sa_subject()]))
    request = pods("get", "postgres-0")
    allowed_, reason = authorize(SA, request, objects)
    assert not allowed_
    assert reason == 'RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, role.rbac.authorization.k8s.io "missing" not found]'
    assert forbidden(SA, request, reason).message == (
        'pods "postgres-0" is forbidden: User "system:serviceaccount:ns:sa" cannot get resource "pods" in API group "" in the namespace "ns": ' + reason
    )
    assert forbidden(User("<b>&"), Request(verb="get", path="/x")).message == 'forbidden: User "&lt;b&gt;&amp;" cannot get path "/x"'


def test_require_raises_the_forbidden_error() -> None:
    with pytest.raises(ApiError) as raised:
        rbac.require(SA, pods("delete", "postgres-0"), store())
    assert raised.value.status == 403
    rbac.require(SA, Request(verb="get", path="/version"), store())


def test_unsupported_role_ref_kind_is_reported() -> None:
    objects = store(role_binding("rb", "Thing", "x", [sa_subject()]))
    assert authorize(SA, pods("get", "p"), objects) == (False, 'RBAC: unsupported role reference kind: "Thing"')


# Reviews.


def test_access_review_reasons() -> None:
    objects = store(
        role("exec", [rule(["create"], resources=["pods/exec"])]),
        role_binding("pg-exec", "Role", "exec", [sa_subject(namespace=None)]),
        cluster_role("pod-reader", [rule(["get"], resources=["pods"])]),
        cluster_role_binding("readers", "pod-reader", [group_subject("system:serviceaccounts")]),
    )
    spec = {"resourceAttributes": {"namespace": NS, "verb": "create", "resource": "pods", "subresource": "exec", "name": "postgres-0"}}
    assert access_review(SA, spec, objects) == {"allowed": True, "reason": 'RBAC: allowed by RoleBinding "pg-exec/ns" of Role "exec" to ServiceAccount "sa/ns"'}
    spec = {"resourceAttributes": {"namespace": OTHER, "verb": "get", "resource": "pods"}}
    assert access_review(SA, spec, objects) == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "readers" of ClusterRole "pod-reader" to Group "system:serviceaccounts"',
    }
    assert access_review(SA, {"resourceAttributes": {"namespace": NS, "verb": "delete", "resource": "pods"}}, objects) == {"allowed": False}


def test_access_review_non_resource_and_masters() -> None:
    assert access_review(SA, {"nonResourceAttributes": {"path": "/apis", "verb": "get"}}, store()) == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated"',
    }
    assert access_review(SA, {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}, store()) == {"allowed": False}
    masters = User("admin", ("system:masters", "system:authenticated"))
    assert access_review(masters, {"resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}}, store()) == {"allowed": True}


def test_access_review_reports_missing_roles_in_the_reason() -> None:
    objects = store(role_binding("rb", "Role", "missing", [sa_subject()]))
    assert access_review(SA, {"resourceAttributes": {"namespace": NS, "verb": "get", "resource": "pods"}}, objects) == {
        "allowed": False,
        "reason": 'RBAC: role.rbac.authorization.k8s.io "missing" not found',
    }


def test_access_review_needs_exactly_one_kind_of_attributes() -> None:
    with pytest.raises(ApiError) as raised:
        access_review(SA, {}, store())
    assert (raised.value.status, raised.value.reason) == (422, "Invalid")
    assert raised.value.message == (
        'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: null: '
        "exactly one of nonResourceAttributes or resourceAttributes must be specified"
    )
    assert raised.value.details["kind"] == "SelfSubjectAccessReview"
    assert raised.value.details["group"] == "authorization.k8s.io"
    assert raised.value.details["causes"][0]["field"] == "spec.resourceAttributes"
    with pytest.raises(ApiError) as raised:
        access_review(SA, {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/api", "verb": "get"}}, store())
    assert raised.value.message == (
        'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.nonResourceAttributes: Invalid value: {"Path":"/api","Verb":"get"}: '
        "cannot be specified in combination with resourceAttributes"
    )


def test_access_review_of_a_bare_verb_is_a_resource_request() -> None:
    objects = store(cluster_role("all-resources", [rule(["*"], ["*"], ["*"])]), cluster_role_binding("crb", "all-resources", [sa_subject()]))
    assert access_review(SA, {"resourceAttributes": {"verb": "get"}}, objects)["allowed"]
    assert not access_review(SA, {"nonResourceAttributes": {"verb": "get"}}, objects)["allowed"]


def test_rules_review_lists_the_rules_of_the_namespace() -> None:
    objects = store(
        role("reader", [rule(["get", "list"], resources=["pods"]), rule(["get"], resources=["secrets"], names=["pg"])]),
        role_binding("rb", "Role", "reader", [sa_subject()]),
        role("elsewhere", [rule(["delete"], resources=["pods"])], namespace=OTHER),
        role_binding("rb", "Role", "elsewhere", [sa_subject()], namespace=OTHER),
    )
    status = rules_review(SA, NS, objects)
    assert status["incomplete"] is False
    assert "evaluationError" not in status
    assert status["resourceRules"] == [
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]},
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["pg"]},
    ]
    assert status["nonResourceRules"] == [
        {
            "verbs": ["get"],
            "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
        },
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]},
        {"verbs": ["get"], "nonResourceURLs": ["/.well-known/openid-configuration", "/openid/v1/jwks"]},
    ]
    assert {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]} in rules_review(SA, OTHER, objects)["resourceRules"]


def test_rules_review_of_masters_shows_cluster_admin() -> None:
    status = rules_review(User("admin", ("system:masters", "system:authenticated")), NS, store())
    assert status["resourceRules"][0] == {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    assert {"verbs": ["*"], "nonResourceURLs": ["*"]} in status["nonResourceRules"]


def test_rules_review_reports_missing_roles_and_needs_a_namespace() -> None:
    status = rules_review(SA, NS, store(role_binding("rb", "ClusterRole", "gone", [sa_subject()])))
    assert status["evaluationError"] == 'clusterrole.rbac.authorization.k8s.io "gone" not found'
    assert status["incomplete"] is False
    with pytest.raises(ApiError) as raised:
        rules_review(SA, "", store())
    assert (raised.value.status, raised.value.reason, raised.value.message) == (400, "BadRequest", "no namespace on request")


def test_go_quote() -> None:
    assert rbac.go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert rbac.go_quote("tab\there\x00") == '"tab\\there\\x00"'
    assert rbac.go_quote("é") == '"é"'
