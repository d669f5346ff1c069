"""Authentication subjects and RBAC authorization for the local API server, as pure functions over API-shaped objects.

It follows kube-apiserver's authorizer chain for ordinary users: the ``system:masters`` group is allowed everything
before RBAC is asked, then Roles, RoleBindings, ClusterRoles and ClusterRoleBindings decide as in
plugin/pkg/auth/authorizer/rbac (the Node authorizer, which only speaks for kubelets, is left out). Stored objects
come from an ``objects(kind, namespace)`` callback; the bootstrap policy's ClusterRoles and ClusterRoleBindings
(cluster-admin, system:discovery, system:basic-user, system:public-info-viewer, system:monitoring,
system:service-account-issuer-discovery and the aggregated admin/edit/view with their system:aggregate-to-* parts)
are always present, as the server reconciles them at start-up, unless an object of the same name is stored. The
texts (forbidden messages, "RBAC: allowed by ..." reasons, review statuses) are upstream's for Kubernetes 1.34.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import ApiError

SYSTEM_MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SERVICE_ACCOUNTS = "system:serviceaccounts"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ANONYMOUS_NAME = "system:anonymous"
RBAC_GROUP = "rbac.authorization.k8s.io"
AUTHORIZATION_GROUP = "authorization.k8s.io"

# objects(kind, namespace): the stored Roles or RoleBindings of one namespace, or the stored ClusterRoles or
# ClusterRoleBindings when namespace is None. Kinds are "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding".
Objects = Callable[[str, str | None], list[dict]]


@dataclass(frozen=True)
class User:
    """An authenticated (or anonymous) user as the authenticators hand it to the authorizer."""

    name: str
    groups: tuple[str, ...] = ()


def service_account_user(namespace: str, name: str) -> User:
    """The user a ServiceAccount token authenticates as."""
    return User(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}", (SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{namespace}", AUTHENTICATED))


def authenticated_user(name: str, groups: tuple[str, ...] | list[str] = ()) -> User:
    """A user from a client certificate or token; the server adds ``system:authenticated`` to every authenticated user."""
    groups = tuple(groups)
    return User(name, groups if AUTHENTICATED in groups else (*groups, AUTHENTICATED))


ANONYMOUS = User(ANONYMOUS_NAME, (UNAUTHENTICATED,))


@dataclass(frozen=True)
class Request:
    """The authorizer's attributes of one request (authorizer.AttributesRecord).

    A resource request names a resource (``pods``, ``pods`` + subresource ``exec``); a non-resource request has only a
    path (``/api``, ``/version``, ``/healthz``) and the lower-cased HTTP method as verb. ``resource_request`` overrides the
    guess for the rare request that has neither (an access review of a bare verb).
    """

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool | None = None

    @property
    def is_resource_request(self) -> bool:
        if self.resource_request is not None:
            return self.resource_request
        return bool(self.resource) or not self.path


# The bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), as `kubectl get clusterroles -o yaml` shows it.

_READ = ("get", "list", "watch")
_WRITE = ("create", "delete", "deletecollection", "patch", "update")
_READ_WRITE = _READ + _WRITE


def _rule(verbs: tuple[str, ...] | list[str], groups: tuple[str, ...] = (), resources: tuple[str, ...] = (), urls: tuple[str, ...] = ()) -> dict[str, Any]:
    # The bootstrap rules are built sorted and in PolicyRule's field order, which is how the server serialises them.
    rule: dict[str, Any] = {"verbs": sorted(verbs)}
    if resources:
        rule["apiGroups"] = sorted(groups)
        rule["resources"] = sorted(resources)
    if urls:
        rule["nonResourceURLs"] = sorted(urls)
    return rule


_HEALTH_URLS = ("/healthz", "/livez", "/readyz")

_BOOTSTRAP_RULES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [_rule(["*"], ("*",), ("*",)), _rule(["*"], urls=("*",))],
    "system:discovery": [
        _rule(["get"], urls=(*_HEALTH_URLS, "/version", "/version/", "/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*")),
    ],
    "system:basic-user": [
        _rule(["create"], (AUTHORIZATION_GROUP,), ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
        _rule(["create"], ("authentication.k8s.io",), ("selfsubjectreviews",)),
    ],
    "system:public-info-viewer": [_rule(["get"], urls=(*_HEALTH_URLS, "/version", "/version/"))],
    "system:monitoring": [_rule(["get"], urls=(*_HEALTH_URLS, "/healthz/*", "/livez/*", "/readyz/*", "/metrics", "/metrics/slis"))],
    "system:service-account-issuer-discovery": [_rule(["get"], urls=("/.well-known/openid-configuration", "/openid/v1/jwks"))],
    "system:aggregate-to-admin": [
        _rule(["create"], (AUTHORIZATION_GROUP,), ("localsubjectaccessreviews",)),
        _rule(_READ_WRITE, (RBAC_GROUP,), ("roles", "rolebindings")),
    ],
    "system:aggregate-to-edit": [
        _rule(_READ, ("",), ("pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy")),
        _rule(["impersonate"], ("",), ("serviceaccounts",)),
        _rule(_WRITE, ("",), ("pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward")),
        _rule(["create"], ("",), ("pods/eviction",)),
        _rule(
            _WRITE,
            ("",),
            (
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ),
        ),
        _rule(["create"], ("",), ("serviceaccounts/token",)),
        _rule(
            _WRITE,
            ("apps",),
            (
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ),
        ),
        _rule(_WRITE, ("autoscaling",), ("horizontalpodautoscalers",)),
        _rule(_WRITE, ("batch",), ("jobs", "cronjobs")),
        _rule(
            _WRITE,
            ("extensions",),
            (
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ),
        ),
        _rule(_WRITE, ("policy",), ("poddisruptionbudgets",)),
        _rule(_WRITE, ("networking.k8s.io",), ("networkpolicies", "ingresses")),
        _rule(_READ_WRITE, ("coordination.k8s.io",), ("leases",)),
    ],
    "system:aggregate-to-view": [
        _rule(
            _READ,
            ("",),
            (
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ),
        ),
        _rule(
            _READ,
            ("",),
            (
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ),
        ),
        _rule(_READ, ("",), ("namespaces",)),
        _rule(_READ, ("discovery.k8s.io",), ("endpointslices",)),
        _rule(
            _READ,
            ("apps",),
            (
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ),
        ),
        _rule(_READ, ("autoscaling",), ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
        _rule(_READ, ("batch",), ("jobs", "cronjobs", "cronjobs/status", "jobs/status")),
        _rule(
            _READ,
            ("extensions",),
            (
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ),
        ),
        _rule(_READ, ("policy",), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
        _rule(_READ, ("networking.k8s.io",), ("networkpolicies", "ingresses", "ingresses/status")),
    ],
}

_AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"

# admin, edit and view have no rules of their own: the aggregation controller fills them from every ClusterRole whose
# labels match, and view is itself part of edit, edit of admin.
_AGGREGATED: dict[str, tuple[str, str | None]] = {"admin": ("admin", None), "edit": ("edit", "admin"), "view": ("view", "edit")}
_AGGREGATION_PARTS = {"system:aggregate-to-admin": "admin", "system:aggregate-to-edit": "edit", "system:aggregate-to-view": "view"}

_BOOTSTRAP_BINDINGS: dict[str, tuple[str, ...]] = {
    "cluster-admin": (SYSTEM_MASTERS,),
    "system:discovery": (AUTHENTICATED,),
    "system:basic-user": (AUTHENTICATED,),
    "system:public-info-viewer": (AUTHENTICATED, UNAUTHENTICATED),
    "system:monitoring": ("system:monitoring",),
    "system:service-account-issuer-discovery": (SERVICE_ACCOUNTS,),
}


def _bootstrap_metadata(name: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(extra_labels or {})},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def _bootstrap_roles() -> dict[str, dict[str, Any]]:
    roles: dict[str, dict[str, Any]] = {}
    for name, (aggregates, part_of) in _AGGREGATED.items():
        roles[name] = {
            "kind": "ClusterRole",
            "apiVersion": f"{RBAC_GROUP}/v1",
            "metadata": _bootstrap_metadata(name, {f"{_AGGREGATE_TO}{part_of}": "true"} if part_of else None),
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {f"{_AGGREGATE_TO}{aggregates}": "true"}}]},
            "rules": [],
        }
    for name, rules in _BOOTSTRAP_RULES.items():
        part = _AGGREGATION_PARTS.get(name)
        roles[name] = {
            "kind": "ClusterRole",
            "apiVersion": f"{RBAC_GROUP}/v1",
            "metadata": _bootstrap_metadata(name, {f"{_AGGREGATE_TO}{part}": "true"} if part else None),
            "rules": copy.deepcopy(rules),
        }
    return dict(sorted(roles.items()))


def _bootstrap_bindings() -> dict[str, dict[str, Any]]:
    return {
        name: {
            "kind": "ClusterRoleBinding",
            "apiVersion": f"{RBAC_GROUP}/v1",
            "metadata": _bootstrap_metadata(name),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": group} for group in groups],
        }
        for name, groups in sorted(_BOOTSTRAP_BINDINGS.items())
    }


def _no_objects(kind: str, namespace: str | None) -> list[dict]:
    return []


def bootstrap_cluster_roles() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoles, with admin/edit/view's rules aggregated as the controller leaves them."""
    policy = _Policy(_no_objects)
    roles = []
    for name, role in _bootstrap_roles().items():
        # Aggregated roles share rule dicts with their parts inside the policy; callers get their own copies.
        role["rules"] = copy.deepcopy(policy.cluster_role_rules(name) or [])
        roles.append(role)
    return roles


def bootstrap_cluster_role_bindings() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoleBindings, each binding groups to the ClusterRole of the same name."""
    return list(_bootstrap_bindings().values())


# Rule matching (pkg/apis/rbac/v1 helpers and RuleAllows).


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def verb_matches(rule: dict, verb: str) -> bool:
    return any(item in ("*", verb) for item in _strings(rule.get("verbs")))


def api_group_matches(rule: dict, group: str) -> bool:
    return any(item in ("*", group) for item in _strings(rule.get("apiGroups")))


def resource_matches(rule: dict, combined: str, subresource: str) -> bool:
    for item in _strings(rule.get("resources")):
        if item in ("*", combined):
            return True
        # "*/scale" grants the scale subresource of every resource, and nothing else.
        if subresource and item == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: dict, name: str) -> bool:
    # An empty list allows every name; otherwise the request must carry one of them, so a list, watch or create
    # without a name is never granted by a rule with resourceNames.
    names = _strings(rule.get("resourceNames"))
    return not names or name in names


def non_resource_url_matches(rule: dict, path: str) -> bool:
    for item in _strings(rule.get("nonResourceURLs")):
        if item in ("*", path):
            return True
        if item.endswith("*") and path.startswith(item.rstrip("*")):
            return True
    return False


def rule_allows(request: Request, rule: dict) -> bool:
    """Whether one PolicyRule grants the request."""
    if not verb_matches(rule, request.verb):
        return False
    if not request.is_resource_request:
        return non_resource_url_matches(rule, request.path)
    combined = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    return api_group_matches(rule, request.api_group) and resource_matches(rule, combined, request.subresource) and resource_name_matches(rule, request.name)


# Subjects.


def _applies_to_user(user: User, subject: dict, namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # A RoleBinding's ServiceAccount subject without a namespace means one in the binding's namespace; in a
        # ClusterRoleBinding there is none to default to, so it matches nobody (and validation refuses it).
        sa_namespace = subject.get("namespace") or namespace
        if not sa_namespace:
            return False
        return user.name == f"{SERVICE_ACCOUNT_PREFIX}{sa_namespace}:{name}"
    return False


def _applies_to(user: User, subjects: Any, namespace: str) -> dict | None:
    for subject in subjects if isinstance(subjects, list) else []:
        if isinstance(subject, dict) and _applies_to_user(user, subject, namespace):
            return subject
    return None


def _describe_subject(subject: dict, binding_namespace: str) -> str:
    kind = str(subject.get("kind", ""))
    name = str(subject.get("name", ""))
    if kind == "ServiceAccount":
        return f"{kind} {go_quote(name + '/' + (subject.get('namespace') or binding_namespace))}"
    return f"{kind} {go_quote(name)}"


# Object resolution.


def _name(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _labels(obj: dict) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def _selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression must hold; an empty selector matches all."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key")
        operator = expression.get("operator")
        values = _strings(expression.get("values"))
        present = key in labels
        if operator == "In":
            ok = present and labels[key] in values
        elif operator == "NotIn":
            ok = not present or labels[key] not in values
        elif operator == "Exists":
            ok = present
        elif operator == "DoesNotExist":
            ok = not present
        else:
            # An unknown operator makes the selector invalid, which the aggregation controller treats as matching nothing.
            return False
        if not ok:
            return False
    return True


class _Policy:
    """The RBAC objects one decision sees: stored ones over the bootstrap ones, each list fetched once."""

    def __init__(self, objects: Objects) -> None:
        self._objects = objects
        self._lists: dict[tuple[str, str | None], list[dict]] = {}
        self._cluster_roles: dict[str, dict] | None = None
        self._aggregated: dict[str, list[dict]] = {}

    def _list(self, kind: str, namespace: str | None) -> list[dict]:
        key = (kind, namespace)
        if key not in self._lists:
            items = []
            for obj in self._objects(kind, namespace) or []:
                if not isinstance(obj, dict):
                    continue
                stored_namespace = (obj.get("metadata") or {}).get("namespace")
                if namespace is not None and stored_namespace and stored_namespace != namespace:
                    continue
                items.append(obj)
            self._lists[key] = items
        return self._lists[key]

    def cluster_roles(self) -> dict[str, dict]:
        if self._cluster_roles is None:
            roles = _bootstrap_roles()
            roles.update({_name(obj): obj for obj in self._list("ClusterRole", None)})
            self._cluster_roles = dict(sorted(roles.items()))
        return self._cluster_roles

    def cluster_role_bindings(self) -> list[dict]:
        # The informer cache hands them over in no particular order; name order keeps the reasons reproducible.
        bindings = _bootstrap_bindings()
        bindings.update({_name(obj): obj for obj in self._list("ClusterRoleBinding", None)})
        return [bindings[name] for name in sorted(bindings)]

    def role_bindings(self, namespace: str) -> list[dict]:
        return sorted(self._list("RoleBinding", namespace), key=_name)

    def role(self, namespace: str, name: str) -> dict | None:
        return next((obj for obj in self._list("Role", namespace) if _name(obj) == name), None)

    def cluster_role_rules(self, name: str, seen: frozenset[str] = frozenset()) -> list[dict] | None:
        """A ClusterRole's rules, aggregated (as the controller keeps them) when it has an aggregationRule; None if absent."""
        role = self.cluster_roles().get(name)
        if role is None:
            return None
        aggregation = role.get("aggregationRule")
        if not isinstance(aggregation, dict) or name in seen:
            return [rule for rule in role.get("rules") or [] if isinstance(rule, dict)]
        if not seen and name in self._aggregated:
            return self._aggregated[name]
        rules: list[dict] = []
        for selector in aggregation.get("clusterRoleSelectors") or []:
            for other_name, other in self.cluster_roles().items():
                if other_name == name or not _selector_matches(selector, _labels(other)):
                    continue
                for rule in self.cluster_role_rules(other_name, seen | {name}) or []:
                    if rule not in rules:
                        rules.append(rule)
        if not seen:
            self._aggregated[name] = rules
        return rules

    def role_ref_rules(self, role_ref: Any, binding_namespace: str) -> tuple[list[dict], str | None]:
        """The rules a binding's roleRef grants, or the error upstream's resolver reports (a missing role, a bad kind)."""
        role_ref = role_ref if isinstance(role_ref, dict) else {}
        kind = str(role_ref.get("kind") or "")
        name = str(role_ref.get("name") or "")
        if kind == "Role":
            role = self.role(binding_namespace, name) if binding_namespace else None
            if role is None:
                return [], f"role.{RBAC_GROUP} {go_quote(name)} not found"
            return [rule for rule in role.get("rules") or [] if isinstance(rule, dict)], None
        if kind == "ClusterRole":
            rules = self.cluster_role_rules(name)
            if rules is None:
                return [], f"clusterrole.{RBAC_GROUP} {go_quote(name)} not found"
            return rules, None
        return [], f"unsupported role reference kind: {go_quote(kind)}"


class _Visit(NamedTuple):
    source: str | None
    rule: dict | None
    error: str | None


def _visit_rules(user: User, namespace: str, policy: _Policy) -> Iterator[_Visit]:
    """Every rule that applies to the user in the namespace, ClusterRoleBindings first, as DefaultRuleResolver visits them."""
    for binding in policy.cluster_role_bindings():
        subject = _applies_to(user, binding.get("subjects"), "")
        if subject is None:
            continue
        role_ref = binding.get("roleRef") or {}
        rules, error = policy.role_ref_rules(role_ref, "")
        if error:
            yield _Visit(None, None, error)
            continue
        source = (
            f"ClusterRoleBinding {go_quote(_name(binding))} of {role_ref.get('kind', '')} {go_quote(str(role_ref.get('name', '')))}"
            f" to {_describe_subject(subject, '')}"
        )
        for rule in rules:
            yield _Visit(source, rule, None)
    if not namespace:
        return
    for binding in policy.role_bindings(namespace):
        subject = _applies_to(user, binding.get("subjects"), namespace)
        if subject is None:
            continue
        role_ref = binding.get("roleRef") or {}
        rules, error = policy.role_ref_rules(role_ref, namespace)
        if error:
            yield _Visit(None, None, error)
            continue
        binding_namespace = (binding.get("metadata") or {}).get("namespace") or namespace
        source = (
            f"RoleBinding {go_quote(_name(binding) + '/' + binding_namespace)} of {role_ref.get('kind', '')} {go_quote(str(role_ref.get('name', '')))}"
            f" to {_describe_subject(subject, binding_namespace)}"
        )
        for rule in rules:
            yield _Visit(source, rule, None)


# Decisions.


def authorize(user: User, request: Request, objects: Objects) -> tuple[bool, str]:
    """Whether the request is allowed, and upstream's reason: "RBAC: allowed by ..." when allowed, "" or the role
    resolution errors ("RBAC: clusterrole... not found") when not. RBAC never denies outright, it only fails to allow."""
    if SYSTEM_MASTERS in user.groups:
        # The privileged-group authorizer answers before RBAC, and gives no reason.
        return True, ""
    errors: list[str] = []
    for visit in _visit_rules(user, request.namespace, _Policy(objects)):
        if visit.rule is not None and rule_allows(request, visit.rule):
            return True, f"RBAC: allowed by {visit.source}"
        if visit.error:
            errors.append(visit.error)
    return False, f"RBAC: {aggregate_errors(errors)}" if errors else ""


def forbidden_message(user: User, request: Request) -> str:
    """The "User ... cannot ..." sentence of a 403, before the resource prefix and the reason."""
    if not request.is_resource_request:
        return f"User {go_quote(user.name)} cannot {request.verb} path {go_quote(request.path)}"
    resource = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    head = f"User {go_quote(user.name)} cannot {request.verb} resource {go_quote(resource)} in API group {go_quote(request.api_group)}"
    if request.namespace:
        return f"{head} in the namespace {go_quote(request.namespace)}"
    return f"{head} at the cluster scope"


def forbidden(user: User, request: Request, reason: str = "") -> ApiError:
    """The 403 Forbidden the authorization filter answers with; ``reason`` is the one ``authorize`` returned."""
    # The server escapes HTML in its own sentence so the message never looks like markup; the reason is left alone.
    message = forbidden_message(user, request).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if reason:
        message = f"{message}: {reason}"
    # The qualified resource names the resource only (never the subresource); details drop empty fields as the
    # server's JSON does, which leaves them empty for a non-resource path.
    resource = request.resource if request.is_resource_request else ""
    group = request.api_group if request.is_resource_request else ""
    qualified = f"{resource}.{group}" if group else resource
    if not qualified:
        text = f"forbidden: {message}"
    elif not request.name:
        text = f"{qualified} is forbidden: {message}"
    else:
        text = f"{qualified} {go_quote(request.name)} is forbidden: {message}"
    details = {key: value for key, value in (("name", request.name), ("group", group), ("kind", resource)) if value}
    return ApiError(403, "Forbidden", text, details)


def require(user: User, request: Request, objects: Objects) -> None:
    """Raise the 403 the server would answer unless the request is allowed."""
    allowed, reason = authorize(user, request, objects)
    if not allowed:
        raise forbidden(user, request, reason)


def _invalid_review(field: str, body: str) -> ApiError:
    kind = "SelfSubjectAccessReview"
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{AUTHORIZATION_GROUP} "" is invalid: {field}: {body}',
        {"group": AUTHORIZATION_GROUP, "kind": kind, "causes": [{"reason": "FieldValueInvalid", "message": body, "field": field}]},
    )


def review_request(spec: Any) -> Request:
    """The attributes a SelfSubjectAccessReview spec asks about, or its 422 when it has not exactly one kind of attributes."""
    spec = spec if isinstance(spec, dict) else {}
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        # The server prints the internal struct as JSON, with Go's field names.
        attrs = non_resource if isinstance(non_resource, dict) else {}
        value = json.dumps({"Path": str(attrs.get("path") or ""), "Verb": str(attrs.get("verb") or "")}, separators=(",", ":"))
        raise _invalid_review("spec.nonResourceAttributes", f"Invalid value: {value}: cannot be specified in combination with resourceAttributes")
    if resource is None and non_resource is None:
        raise _invalid_review("spec.resourceAttributes", "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified")
    if resource is not None:
        attrs = resource if isinstance(resource, dict) else {}
        return Request(
            verb=str(attrs.get("verb") or ""),
            api_group=str(attrs.get("group") or ""),
            resource=str(attrs.get("resource") or ""),
            subresource=str(attrs.get("subresource") or ""),
            namespace=str(attrs.get("namespace") or ""),
            name=str(attrs.get("name") or ""),
            resource_request=True,
        )
    attrs = non_resource if isinstance(non_resource, dict) else {}
    return Request(verb=str(attrs.get("verb") or ""), path=str(attrs.get("path") or ""), resource_request=False)


def access_review(user: User, spec: Any, objects: Objects) -> dict[str, Any]:
    """The ``status`` of a SelfSubjectAccessReview: ``allowed``, and ``reason`` when there is one (``denied`` is omitted,
    as RBAC never denies)."""
    allowed, reason = authorize(user, review_request(spec), objects)
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


def rules_review(user: User, namespace: str, objects: Objects) -> dict[str, Any]:
    """The ``status`` of a SelfSubjectRulesReview of ``namespace``: RBAC's rules only, as the privileged-group authorizer
    does not list rules (a system:masters user sees what cluster-admin's binding gives)."""
    if not namespace:
        raise ApiError(400, "BadRequest", "no namespace on request")
    resource_rules: list[dict[str, Any]] = []
    non_resource_rules: list[dict[str, Any]] = []
    errors: list[str] = []
    for visit in _visit_rules(user, namespace, _Policy(objects)):
        if visit.error:
            errors.append(visit.error)
        rule = visit.rule
        if rule is None:
            continue
        if _strings(rule.get("resources")):
            entry: dict[str, Any] = {"verbs": _strings(rule.get("verbs"))}
            # apiGroups, resources and resourceNames are omitted when empty, as the server's JSON omits them.
            for key in ("apiGroups", "resources", "resourceNames"):
                if _strings(rule.get(key)):
                    entry[key] = _strings(rule.get(key))
            resource_rules.append(entry)
        if _strings(rule.get("nonResourceURLs")):
            non_resource_rules.append({"verbs": _strings(rule.get("verbs")), "nonResourceURLs": _strings(rule.get("nonResourceURLs"))})
    status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": False}
    if errors:
        status["evaluationError"] = aggregate_errors(errors)
    return status


# Go formatting.

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(value: str) -> str:
    """Go's %q (strconv.Quote): the quoting of every name in upstream's messages."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def aggregate_errors(messages: list[str]) -> str:
    """utilerrors.Aggregate's text: one message alone, several de-duplicated inside brackets."""
    unique = list(dict.fromkeys(messages))
    if len(unique) <= 1:
        return "".join(unique)
    return "[" + ", ".join(unique) + "]"
