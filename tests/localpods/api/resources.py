"""The resources the local API stand-in serves and the documents that describe them, shaped as kube-apiserver 1.32 answers.

This module holds no state and does no I/O: it names the served resources (``RESOURCES``), builds the discovery documents
(``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``, ``/version`` and the aggregated ``apidiscovery.k8s.io/v2``
form), the server-side ``meta.k8s.io/v1`` Tables that ``kubectl get`` asks for, and the small OpenAPI v3 documents from
which kubectl 1.32 learns that the server validates fields itself (``fieldValidation``), so that it never needs schemas.
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Iterable

from .errors import bad_request

DEFAULT_GIT_VERSION = "v1.32.4"

# The verbs of a stored, listable resource and of the status/scale subresources, as upstream lists them (sorted).
STANDARD_VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NAMESPACE_VERBS: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
CREATE_ONLY: tuple[str, ...] = ("create",)
STATUS_VERBS: tuple[str, ...] = ("get", "patch", "update")

AGGREGATED_DISCOVERY_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
# kube-apiserver answers Table requests with a plain JSON content type; the body's kind tells clients it is a Table.
TABLE_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class SubresourceSpec:
    """How a subresource appears in discovery: ``kind`` empty means the parent's kind, ``group``/``version`` None the parent's."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None
    version: str | None = None


# Every subresource name a Resource may list, with upstream's kinds and verbs. Subresources not listed by any resource in
# RESOURCES (attach, binding, portforward, proxy, finalize, ephemeralcontainers) are here so adding one is one word.
SUBRESOURCES: dict[str, SubresourceSpec] = {
    "status": SubresourceSpec("status", "", STATUS_VERBS),
    "scale": SubresourceSpec("scale", "Scale", STATUS_VERBS, group="autoscaling", version="v1"),
    "exec": SubresourceSpec("exec", "PodExecOptions", ("create", "get")),
    "attach": SubresourceSpec("attach", "PodAttachOptions", ("create", "get")),
    "portforward": SubresourceSpec("portforward", "PodPortForwardOptions", ("create", "get")),
    "log": SubresourceSpec("log", "", ("get",)),
    "eviction": SubresourceSpec("eviction", "Eviction", CREATE_ONLY, group="policy", version="v1"),
    "binding": SubresourceSpec("binding", "Binding", CREATE_ONLY),
    "ephemeralcontainers": SubresourceSpec("ephemeralcontainers", "", STATUS_VERBS),
    "token": SubresourceSpec("token", "TokenRequest", CREATE_ONLY, group="authentication.k8s.io", version="v1"),
    "finalize": SubresourceSpec("finalize", "", ("update",)),
    "proxy": SubresourceSpec("proxy", "", ("create", "delete", "get", "patch", "update")),
}


@dataclass(frozen=True)
class Resource:
    """One served resource, named as discovery names it (``plural`` is the URL segment, ``kind`` the object's kind)."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...] = STANDARD_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    list_kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``plural.group`` as the API server names the resource in its error messages (``pods``, ``statefulsets.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def stored(self) -> bool:
        """Whether objects persist (review resources only answer a create); only stored resources have a storage hash."""
        return "get" in self.verbs

    @property
    def storage_version_hash(self) -> str:
        """Upstream's hash: base64 of the first 8 bytes of sha256 over ``group/version/kind`` of the storage version."""
        digest = hashlib.sha256(f"{self.group}/{self.version}/{self.kind}".encode()).digest()
        return base64.b64encode(digest[:8]).decode()

    def subresource(self, name: str) -> SubresourceSpec | None:
        """The discovery description of ``name`` if this resource serves it, with the parent's kind filled in."""
        if name not in self.subresources:
            return None
        spec = SUBRESOURCES[name]
        kind = spec.kind or self.kind
        if name == "proxy":
            kind = f"{self.kind}ProxyOptions"
        return SubresourceSpec(name, kind, spec.verbs, spec.group, spec.version)


def _res(
    group: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    verbs: tuple[str, ...] = STANDARD_VERBS,
    short: tuple[str, ...] = (),
    all_category: bool = False,
    sub: tuple[str, ...] = (),
    singular: str | None = None,
) -> Resource:
    return Resource(
        group=group,
        version="v1",
        kind=kind,
        plural=plural,
        singular=singular if singular is not None else kind.lower(),
        namespaced=namespaced,
        verbs=verbs,
        short_names=short,
        categories=("all",) if all_category else (),
        subresources=tuple(sorted(sub)),
        list_kind=f"{kind}List" if "list" in verbs else "",
    )


RESOURCES: tuple[Resource, ...] = (
    _res("", "Namespace", "namespaces", namespaced=False, verbs=NAMESPACE_VERBS, short=("ns",), sub=("status",)),
    _res("", "Pod", "pods", short=("po",), all_category=True, sub=("status", "exec", "log", "eviction")),
    _res("", "Service", "services", short=("svc",), all_category=True, sub=("status",)),
    _res("", "Endpoints", "endpoints", short=("ep",), singular="endpoints"),
    _res("", "ConfigMap", "configmaps", short=("cm",)),
    _res("", "Secret", "secrets"),
    _res("", "PersistentVolumeClaim", "persistentvolumeclaims", short=("pvc",), sub=("status",)),
    _res("", "PersistentVolume", "persistentvolumes", namespaced=False, short=("pv",), sub=("status",)),
    _res("", "ServiceAccount", "serviceaccounts", short=("sa",), sub=("token",)),
    _res("", "Event", "events", short=("ev",)),
    _res("", "ResourceQuota", "resourcequotas", short=("quota",), sub=("status",)),
    _res("", "LimitRange", "limitranges", short=("limits",)),
    _res("apps", "StatefulSet", "statefulsets", short=("sts",), all_category=True, sub=("status", "scale")),
    _res("apps", "Deployment", "deployments", short=("deploy",), all_category=True, sub=("status", "scale")),
    _res("apps", "ReplicaSet", "replicasets", short=("rs",), all_category=True, sub=("status", "scale")),
    _res("apps", "DaemonSet", "daemonsets", short=("ds",), all_category=True, sub=("status",)),
    _res("apps", "ControllerRevision", "controllerrevisions"),
    _res("batch", "Job", "jobs", all_category=True, sub=("status",)),
    _res("batch", "CronJob", "cronjobs", short=("cj",), all_category=True, sub=("status",)),
    _res("policy", "PodDisruptionBudget", "poddisruptionbudgets", short=("pdb",), sub=("status",)),
    _res("networking.k8s.io", "NetworkPolicy", "networkpolicies", short=("netpol",)),
    _res("networking.k8s.io", "Ingress", "ingresses", short=("ing",), sub=("status",)),
    _res("rbac.authorization.k8s.io", "Role", "roles"),
    _res("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
    _res("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", namespaced=False),
    _res("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    _res("coordination.k8s.io", "Lease", "leases"),
    _res("discovery.k8s.io", "EndpointSlice", "endpointslices"),
    _res("storage.k8s.io", "StorageClass", "storageclasses", namespaced=False, short=("sc",)),
    _res("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", namespaced=False, verbs=CREATE_ONLY),
    _res("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", namespaced=False, verbs=CREATE_ONLY),
    _res("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", namespaced=False, verbs=CREATE_ONLY),
)

# /apis lists groups in kube-apiserver's priority order, not alphabetically; clients resolve ambiguous short names by it.
GROUP_ORDER: tuple[str, ...] = (
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "batch",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
)

_BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in RESOURCES}


def find(group: str, version: str, plural: str) -> Resource | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> Resource | None:
    return _BY_KIND.get((api_version, kind))


def group_versions() -> list[tuple[str, str]]:
    """Every served (group, version), the core group ``""`` first, then the groups in ``/apis`` order."""
    seen: list[tuple[str, str]] = []
    for group in ("", *GROUP_ORDER):
        for resource in RESOURCES:
            if resource.group == group and (group, resource.version) not in seen:
                seen.append((group, resource.version))
    return seen


# --- discovery ---------------------------------------------------------------------------------------------------------


def core_versions(server_address: str = "127.0.0.1:6443") -> dict[str, Any]:
    """``GET /api``: the legacy core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_entry(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == group]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def group_list() -> dict[str, Any]:
    """``GET /apis``: every named group with its versions and preferred version."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_entry(group) for group in GROUP_ORDER]}


def api_group(group: str) -> dict[str, Any] | None:
    """``GET /apis/<group>``; None for a group the server does not serve."""
    if group not in GROUP_ORDER:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)}


def _api_resource(resource: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    if resource.stored:
        entry["storageVersionHash"] = resource.storage_version_hash
    return entry


def _api_subresource(resource: Resource, spec: SubresourceSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": f"{resource.plural}/{spec.name}", "singularName": "", "namespaced": resource.namespaced}
    if spec.group is not None:
        entry["group"] = spec.group
        entry["version"] = spec.version
    entry["kind"] = spec.kind
    entry["verbs"] = list(spec.verbs)
    return entry


def _served(group: str, version: str) -> list[Resource]:
    return sorted((r for r in RESOURCES if r.group == group and r.version == version), key=lambda r: r.plural)


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``/apis/<group>/<version>``: resources and ``<plural>/<subresource>`` entries, sorted by name."""
    served = _served(group, version)
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for resource in served:
        entries.append(_api_resource(resource))
        for name in resource.subresources:
            spec = resource.subresource(name)
            if spec is not None:
                entries.append(_api_subresource(resource, spec))
    entries.sort(key=lambda entry: entry["name"])
    document: dict[str, Any] = {"kind": "APIResourceList"}
    # The core list carries no apiVersion while the named groups' lists do; kube-apiserver answers exactly so.
    if group:
        document["apiVersion"] = "v1"
    document["groupVersion"] = f"{group}/{version}" if group else version
    document["resources"] = entries
    return document


def version_info(git_version: str = DEFAULT_GIT_VERSION, **overrides: str) -> dict[str, str]:
    """``GET /version`` as kube-apiserver 1.32 answers it; ``overrides`` replaces any field (``gitCommit=...``)."""
    match = re.match(r"v(\d+)\.(\d+)", git_version)
    major, minor = (match.group(1), match.group(2)) if match else ("", "")
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    info = {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "go1.23.8",
        "compiler": "gc",
        "platform": f"linux/{machine}",
    }
    info.update(overrides)
    return info


def aggregated_discovery(core: bool) -> dict[str, Any]:
    """``GET /api`` (``core``) or ``/apis`` asked for ``as=APIGroupDiscoveryList;v=v2``: every version's resources in one answer.

    Serve it with ``AGGREGATED_DISCOVERY_CONTENT_TYPE``; client-go falls back to the legacy documents whenever the answer's
    content type is plain ``application/json``, so serving it only saves kubectl one request per group version.
    """
    items: list[dict[str, Any]] = []
    for group in [""] if core else list(GROUP_ORDER):
        versions = []
        for g, version in group_versions():
            if g != group:
                continue
            versions.append({"version": version, "resources": [_discovery_resource(r) for r in _served(g, version)], "freshness": "Current"})
        metadata: dict[str, Any] = {"creationTimestamp": None}
        if group:
            metadata["name"] = group
        items.append({"metadata": metadata, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def _discovery_resource(resource: Resource) -> dict[str, Any]:
    # responseKind leaves group and version empty when they are the resource's own, as kube-apiserver does.
    entry: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": {"group": "", "version": "", "kind": resource.kind},
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    subresources = []
    for name in resource.subresources:
        spec = resource.subresource(name)
        if spec is not None:
            kind = {"group": spec.group or "", "version": spec.version or "", "kind": spec.kind}
            subresources.append({"subresource": name, "responseKind": kind, "verbs": list(spec.verbs)})
    if subresources:
        entry["subresources"] = subresources
    return entry


# --- content negotiation ----------------------------------------------------------------------------------------------


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """The Accept header's media ranges, highest quality first (stable for equal quality, as the client listed them)."""
    ranges: list[tuple[float, int, str, dict[str, str]]] = []
    for index, part in enumerate(accept.split(",")):
        pieces = [piece.strip() for piece in part.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            key, _sep, value = piece.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        ranges.append((-quality, index, pieces[0].lower(), params))
    ranges.sort(key=lambda item: (item[0], item[1]))
    return [(media, params) for quality, _index, media, params in ranges if quality < 0]


def _acceptable_json(media: str) -> bool:
    return media in ("application/json", "application/*", "*/*")


def table_api_version(accept: str) -> str | None:
    """``meta.k8s.io/v1`` or ``meta.k8s.io/v1beta1`` when the first range the server can honour asks for a Table, else None."""
    for media, params in _media_ranges(accept):
        if params.get("as") == "Table":
            if media == "application/json" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
                return f"meta.k8s.io/{params['v']}"
            continue
        if params.get("as"):
            continue
        if _acceptable_json(media) or media in ("application/yaml", "application/vnd.kubernetes.protobuf"):
            return None
    return None


def wants_table(accept_header: str) -> bool:
    """True for kubectl get's ``application/json;as=Table;v=v1;g=meta.k8s.io,...,application/json``."""
    return table_api_version(accept_header or "") is not None


def wants_aggregated_discovery(accept_header: str) -> bool:
    """True when the first range the server can honour is ``apidiscovery.k8s.io`` v2 ``APIGroupDiscoveryList``."""
    for media, params in _media_ranges(accept_header or ""):
        if params.get("as") == "APIGroupDiscoveryList":
            if media == "application/json" and params.get("g") == "apidiscovery.k8s.io" and params.get("v") == "v2":
                return True
            continue
        if params.get("as"):
            continue
        if _acceptable_json(media):
            return False
    return False


# --- server-side printing ---------------------------------------------------------------------------------------------

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to "
    "request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and "
    "configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_CREATED_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in "
    "happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_CONTAINERS_DOC = "Names of each container in the template."
_IMAGES_DOC = "Images referenced by each container in the template."


def _col(name: str, description: str, priority: int = 0, type_: str = "string", format_: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


def _name_col(priority: int = 0) -> dict[str, Any]:
    return _col("Name", _NAME_DOC, priority, format_="name")


def _age_col() -> dict[str, Any]:
    return _col("Age", _CREATED_DOC)


Row = list[Any]
Printer = Callable[[dict[str, Any], datetime], tuple[Row, list[dict[str, str]]]]


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def human_duration(seconds_total: float) -> str:
    """apimachinery's duration.HumanDuration: the precision shrinks as the duration grows (``90s``, ``5m3s``, ``3h``, ``12d``)."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(value: Any, now: datetime) -> str:
    moment = _parse_time(value)
    return "<unknown>" if moment is None else human_duration((now - moment).total_seconds())


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("spec") or {}


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def _age(obj: dict[str, Any], now: datetime) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _containers(pod_spec: dict[str, Any]) -> tuple[str, str]:
    containers = pod_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _template_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return (_spec(obj).get("template") or {}).get("spec") or {}


def format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: ``k=v`` sorted by key and joined by commas, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def selector_string(selector: dict[str, Any] | None) -> str:
    """A LabelSelector as labels.Selector.String() renders it: requirements sorted by key, empty for none."""
    if not selector:
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(sorted(set(expression.get("values") or [])))
        rendered = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key, "DoesNotExist": f"!{key}"}
        requirements.append((key, rendered.get(operator, key)))
    requirements.sort(key=lambda item: item[0])
    return ",".join(text for _key, text in requirements)


def format_label_selector(selector: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: the selector's string, ``<none>`` when it selects nothing or everything."""
    return selector_string(selector) or "<none>"


def _condition_true(conditions: Iterable[dict[str, Any]] | None, kind: str) -> bool:
    for condition in conditions or []:
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def _print_pod(pod: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    spec, status, meta = _spec(pod), _status(pod), _meta(pod)
    containers = spec.get("containers") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(containers) + sum(1 for c in init_specs.values() if c.get("restartPolicy") == "Always")
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    conditions: list[dict[str, str]] = []
    if phase == "Succeeded":
        conditions = [{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]
    elif phase == "Failed":
        conditions = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]

    def finished(container: dict[str, Any]) -> datetime | None:
        return _parse_time(((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        restarts += int(container.get("restartCount") or 0)
        ended = finished(container)
        if ended and (last_restart is None or ended > last_restart):
            last_restart = ended
        sidecar = (init_specs.get(container.get("name")) or {}).get("restartPolicy") == "Always"
        if sidecar:
            sidecar_restarts += int(container.get("restartCount") or 0)
            if ended and (last_sidecar_restart is None or ended > last_sidecar_restart):
                last_sidecar_restart = ended
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if sidecar and container.get("started"):
            if container.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode') or 0}"
        elif waiting is not None and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += int(container.get("restartCount") or 0)
            ended = finished(container)
            if ended and (last_restart is None or ended > last_restart):
                last_restart = ended
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                reason = f"Signal:{terminated['signal']}" if terminated.get("signal") else f"ExitCode:{terminated.get('exitCode') or 0}"
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status.get("conditions"), "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else "") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            for condition in status.get("conditions") or []:
                if condition.get("type") == gate.get("conditionType"):
                    true_count += condition.get("status") == "True"
                    break
        gates_text = f"{true_count}/{len(gates)}"
    row = [
        meta.get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod, now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]
    return row, conditions


def _print_configmap(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_meta(obj).get("name", ""), count, _age(obj, now)], []


def _print_secret(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    return [_meta(obj).get("name", ""), obj.get("type") or "Opaque", len(obj.get("data") or {}), _age(obj, now)], []


def _service_external_ip(spec: dict[str, Any], status: dict[str, Any], kind: str) -> str:
    external = list(spec.get("externalIPs") or [])
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        balanced = sorted({entry.get("ip") or entry.get("hostname") for entry in ingress if entry.get("ip") or entry.get("hostname")})
        if external:
            return ",".join(balanced + external)
        return ",".join(balanced) if balanced else "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def _print_service(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    spec = _spec(obj)
    kind = spec.get("type") or "ClusterIP"
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            ports.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{port.get('port')}/{protocol}")
    row = [
        _meta(obj).get("name", ""),
        kind,
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(spec, _status(obj), kind),
        ",".join(ports) or "<none>",
        _age(obj, now),
        format_labels(spec.get("selector")),
    ]
    return row, []


def _replicas(obj: dict[str, Any]) -> int:
    # The API server defaults spec.replicas to 1, so an object stored without it has one desired replica.
    value = _spec(obj).get("replicas")
    return 1 if value is None else int(value)


def _print_statefulset(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    names, images = _containers(_template_spec(obj))
    ready = int(_status(obj).get("readyReplicas") or 0)
    return [_meta(obj).get("name", ""), f"{ready}/{_replicas(obj)}", _age(obj, now), names, images], []


def _print_deployment(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    status = _status(obj)
    names, images = _containers(_template_spec(obj))
    row = [
        _meta(obj).get("name", ""),
        f"{int(status.get('readyReplicas') or 0)}/{_replicas(obj)}",
        int(status.get("updatedReplicas") or 0),
        int(status.get("availableReplicas") or 0),
        _age(obj, now),
        names,
        images,
        selector_string(_spec(obj).get("selector")),
    ]
    return row, []


def _print_replicaset(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    status = _status(obj)
    names, images = _containers(_template_spec(obj))
    row = [
        _meta(obj).get("name", ""),
        _replicas(obj),
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        _age(obj, now),
        names,
        images,
        format_label_selector(_spec(obj).get("selector")),
    ]
    return row, []


def _print_controllerrevision(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    controller = "<none>"
    for owner in _meta(obj).get("ownerReferences") or []:
        if owner.get("controller"):
            # Upstream prints the owner as lower-cased "Kind.group/name" ("statefulset.apps/postgres").
            group, kind = owner.get("apiVersion", "").rpartition("/")[0], owner.get("kind", "")
            qualified = f"{kind}.{group}" if group else kind
            controller = f"{qualified.lower()}/{owner.get('name', '')}" if qualified else owner.get("name", "")
            break
    return [_meta(obj).get("name", ""), controller, int(obj.get("revision") or 0), _age(obj, now)], []


def _print_job(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    spec, status = _spec(obj), _status(obj)
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif int(spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, completed = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    duration = ""
    if started is not None:
        duration = human_duration(((completed or now) - started).total_seconds())
    conditions = status.get("conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _meta(obj).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_template_spec(obj))
    row = [_meta(obj).get("name", ""), state, completions, duration, _age(obj, now), names, images, format_label_selector(spec.get("selector"))]
    return row, []


def _print_cronjob(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    spec, status = _spec(obj), _status(obj)
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers((job_spec.get("template") or {}).get("spec") or {})
    suspend = spec.get("suspend")
    last = _since(status.get("lastScheduleTime"), now) if status.get("lastScheduleTime") else "<none>"
    row = [
        _meta(obj).get("name", ""),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(status.get("active") or []),
        last,
        _age(obj, now),
        names,
        images,
        format_label_selector(job_spec.get("selector")),
    ]
    return row, []


def _print_namespace(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    return [_meta(obj).get("name", ""), _status(obj).get("phase") or "Active", _age(obj, now)], []


def access_modes(modes: Iterable[str] | None) -> str:
    """The short access-mode list kubectl shows (``RWO,ROX,RWX,RWOP``), in that fixed order."""
    present = set(modes or [])
    short = [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
    return ",".join(code for mode, code in short if mode in present)


def _storage_class(obj: dict[str, Any]) -> str:
    annotations = _meta(obj).get("annotations") or {}
    if "volume.beta.kubernetes.io/storage-class" in annotations:
        return annotations["volume.beta.kubernetes.io/storage-class"]
    return _spec(obj).get("storageClassName") or ""


def _quantity(value: Any) -> str:
    # Quantities are printed as stored; kube-apiserver stores them canonicalised already.
    return "0" if value is None else str(value)


def _print_pvc(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    spec, status = _spec(obj), _status(obj)
    phase = "Terminating" if _meta(obj).get("deletionTimestamp") else status.get("phase") or ""
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = access_modes(status.get("accessModes"))
        capacity = _quantity((status.get("capacity") or {}).get("storage"))
    row = [
        _meta(obj).get("name", ""),
        phase,
        spec.get("volumeName") or "",
        capacity,
        modes,
        _storage_class(obj),
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(obj, now),
        spec.get("volumeMode") or "<unset>",
    ]
    return row, []


def _print_pv(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    spec, status = _spec(obj), _status(obj)
    claim = spec.get("claimRef")
    row = [
        _meta(obj).get("name", ""),
        _quantity((spec.get("capacity") or {}).get("storage")),
        access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "",
        "Terminating" if _meta(obj).get("deletionTimestamp") else status.get("phase") or "",
        f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else "",
        _storage_class(obj),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason") or "",
        _age(obj, now),
        spec.get("volumeMode") or "<unset>",
    ]
    return row, []


def _with_more(items: list[str], total: int, limit: int = 3, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or empty


def _print_endpoints(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    subsets = obj.get("subsets") or []
    listed: list[str] = []
    count = 0
    for subset in subsets:
        addresses = [address.get("ip", "") for address in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        if not ports:
            listed.extend(addresses)
            count += len(addresses)
            continue
        for port in ports:
            for ip in addresses:
                listed.append(f"[{ip}]:{port.get('port')}" if ":" in ip else f"{ip}:{port.get('port')}")
                count += 1
    text = "<none>" if not subsets else _with_more(listed, count, empty="")
    return [_meta(obj).get("name", ""), text, _age(obj, now)], []


def _print_endpointslice(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    ports = [str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in obj.get("ports") or []]
    addresses = [address for endpoint in obj.get("endpoints") or [] for address in endpoint.get("addresses") or []]
    row = [_meta(obj).get("name", ""), obj.get("addressType", ""), _with_more(ports, len(ports)), _with_more(addresses, len(addresses)), _age(obj, now)]
    return row, []


def _print_serviceaccount(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    return [_meta(obj).get("name", ""), len(obj.get("secrets") or []), _age(obj, now)], []


def _print_event(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    first = _since(obj.get("firstTimestamp"), now) if obj.get("firstTimestamp") else _since(obj.get("eventTime"), now)
    last = _since(obj.get("lastTimestamp"), now) if obj.get("lastTimestamp") else first
    count = int(obj.get("count") or 0)
    series = obj.get("series")
    if series is not None:
        last = _since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    involved = obj.get("involvedObject") or {}
    target = involved.get("kind", "").lower()
    if involved.get("name"):
        target = f"{target}/{involved['name']}"
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    row = [
        last,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {instance}" if instance else component,
        (obj.get("message") or "").strip(),
        first,
        count,
        _meta(obj).get("name", ""),
    ]
    return row, []


def _print_pdb(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    spec = _spec(obj)
    minimum, maximum = spec.get("minAvailable"), spec.get("maxUnavailable")
    row = [
        _meta(obj).get("name", ""),
        "N/A" if minimum is None else str(minimum),
        "N/A" if maximum is None else str(maximum),
        int(_status(obj).get("disruptionsAllowed") or 0),
        _age(obj, now),
    ]
    return row, []


def _print_networkpolicy(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    return [_meta(obj).get("name", ""), format_label_selector(_spec(obj).get("podSelector")), _age(obj, now)], []


def _print_binding(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    role = obj.get("roleRef") or {}
    users, groups, accounts = [], [], []
    for subject in obj.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name", "")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            accounts.append(f"{subject['namespace']}/{name}" if subject.get("namespace") else name)
    row = [
        _meta(obj).get("name", ""),
        f"{role.get('kind', '')}/{role.get('name', '')}",
        _age(obj, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(accounts),
    ]
    return row, []


def _print_lease(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    return [_meta(obj).get("name", ""), _spec(obj).get("holderIdentity") or "", _age(obj, now)], []


def _print_storageclass(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    annotations = _meta(obj).get("annotations") or {}
    default = "true" in (annotations.get("storageclass.kubernetes.io/is-default-class"), annotations.get("storageclass.beta.kubernetes.io/is-default-class"))
    name = _meta(obj).get("name", "") + (" (default)" if default else "")
    row = [
        name,
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion")),
        _age(obj, now),
    ]
    return row, []


def _print_default(obj: dict[str, Any], now: datetime) -> tuple[Row, list[dict[str, str]]]:
    created = _parse_time(_meta(obj).get("creationTimestamp"))
    stamp = (created or datetime(1, 1, 1, tzinfo=timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [_meta(obj).get("name", ""), stamp], []


_SELECTOR_DOC = "A label query over pods that should match the pod count."
_POD_COLUMNS = [
    _name_col(),
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    _age_col(),
    _col("IP", "podIP address allocated to the pod.", 1),
    _col("Node", "NodeName indicates in which node this pod is scheduled.", 1),
    _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
    _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
]
_CONFIGMAP_COLUMNS = [_name_col(), _col("Data", "Data contains the configuration data."), _age_col()]
_SECRET_COLUMNS = [
    _name_col(),
    _col("Type", "Used to facilitate programmatic handling of secret data."),
    _col("Data", "Data contains the secret data."),
    _age_col(),
]
_SERVICE_COLUMNS = [
    _name_col(),
    _col("Type", "type determines how the Service is exposed."),
    _col("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly."),
    _col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    _col("Port(s)", "The list of ports that are exposed by this service."),
    _age_col(),
    _col("Selector", "Route service traffic to pods with label keys and values matching this selector.", 1),
]
_NAMESPACE_COLUMNS = [_name_col(), _col("Status", "The status of the namespace"), _age_col()]
_ENDPOINTS_COLUMNS = [_name_col(), _col("Endpoints", "The set of all endpoints is the union of all subsets."), _age_col()]
_SERVICEACCOUNT_COLUMNS = [
    _name_col(),
    _col("Secrets", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    _age_col(),
]
_PVC_COLUMNS = [
    _name_col(),
    _col("Status", "phase represents the current phase of PersistentVolumeClaim."),
    _col("Volume", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    _col("Capacity", "capacity represents the actual resources of the underlying volume."),
    _col("Access Modes", "accessModes contains the actual access modes the volume backing the PVC has."),
    _col("StorageClass", "StorageClass of the pvc"),
    _col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    _age_col(),
    _col("VolumeMode", "volumeMode defines what type of volume is required by the claim.", 1),
]
_PV_COLUMNS = [
    _name_col(),
    _col("Capacity", "capacity is the description of the persistent volume's resources and capacity."),
    _col("Access Modes", "accessModes contains all ways the volume can be mounted."),
    _col("Reclaim Policy", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    _col("Status", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    _col("Claim", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    _col("StorageClass", "StorageClass of the pv"),
    _col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
    _col("Reason", "reason is a brief CamelCase string that describes any failure."),
    _age_col(),
    _col("VolumeMode", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.", 1),
]
_EVENT_COLUMNS = [
    _col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    _col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    _col("Reason", "This should be a short, machine understandable string that gives the reason for the transition."),
    _col("Object", "The object that this event is about."),
    _col("Subobject", "If referring to a piece of an object instead of an entire object, the field path.", 1),
    _col("Source", "The component reporting this event.", 1),
    _col("Message", "A human-readable description of the status of this operation."),
    _col("First Seen", "The time at which the event was first recorded.", 1),
    _col("Count", "The number of times this event has occurred.", 1),
    _name_col(1),
]
_STATEFULSET_COLUMNS = [
    _name_col(),
    _col("Ready", "Number of the pod with ready state"),
    _age_col(),
    _col("Containers", _CONTAINERS_DOC, 1),
    _col("Images", _IMAGES_DOC, 1),
]
_DEPLOYMENT_COLUMNS = [
    _name_col(),
    _col("Ready", "Number of the pod with ready state"),
    _col("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    _col("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    _age_col(),
    _col("Containers", _CONTAINERS_DOC, 1),
    _col("Images", _IMAGES_DOC, 1),
    _col("Selector", "Label selector for pods.", 1),
]
_REPLICASET_COLUMNS = [
    _name_col(),
    _col("Desired", "Replicas is the number of desired replicas.", type_="integer"),
    _col("Current", "Replicas is the most recently observed number of replicas.", type_="integer"),
    _col("Ready", "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.", type_="integer"),
    _age_col(),
    _col("Containers", _CONTAINERS_DOC, 1),
    _col("Images", _IMAGES_DOC, 1),
    _col("Selector", "Selector is a label query over pods that should match the replica count.", 1),
]
_CONTROLLERREVISION_COLUMNS = [
    _name_col(),
    _col("Controller", "Controller of the object"),
    _col("Revision", "Revision indicates the revision of the state represented by Data."),
    _age_col(),
]
_JOB_COLUMNS = [
    _name_col(),
    _col("Status", "Status of the job."),
    _col("Completions", "The number of pods which reached phase Succeeded."),
    _col("Duration", "Time required to complete the job."),
    _age_col(),
    _col("Containers", _CONTAINERS_DOC, 1),
    _col("Images", _IMAGES_DOC, 1),
    _col("Selector", _SELECTOR_DOC, 1),
]
_CRONJOB_COLUMNS = [
    _name_col(),
    _col("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    _col("Timezone", "The time zone name for the given schedule."),
    _col("Suspend", "This flag tells the controller to suspend subsequent executions.", type_="boolean"),
    _col("Active", "A list of pointers to currently running jobs.", type_="integer"),
    _col("Last Schedule", "Information when was the last time the job was successfully scheduled."),
    _age_col(),
    _col("Containers", _CONTAINERS_DOC, 1),
    _col("Images", _IMAGES_DOC, 1),
    _col("Selector", _SELECTOR_DOC, 1),
]
_PDB_COLUMNS = [
    _name_col(),
    _col("Min Available", "The minimum number of pods that must be available."),
    _col("Max Unavailable", "The maximum number of pods that may be unavailable."),
    _col("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", type_="integer"),
    _age_col(),
]
_NETWORKPOLICY_COLUMNS = [_name_col(), _col("Pod-Selector", "podSelector selects the pods to which this NetworkPolicy object applies."), _age_col()]


def _binding_columns(kind: str) -> list[dict[str, Any]]:
    return [
        _name_col(),
        _col("Role", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
        _age_col(),
        _col("Users", f"Users in the {kind}", 1),
        _col("Groups", f"Groups in the {kind}", 1),
        _col("ServiceAccounts", f"ServiceAccounts in the {kind}", 1),
    ]


_LEASE_COLUMNS = [_name_col(), _col("Holder", "holderIdentity contains the identity of the holder of a current lease."), _age_col()]
_ENDPOINTSLICE_COLUMNS = [
    _name_col(),
    _col("AddressType", "addressType specifies the type of address carried by this EndpointSlice."),
    _col("Ports", "ports specifies the list of network ports exposed by each endpoint in this slice."),
    _col("Endpoints", "endpoints is a list of unique endpoints in this slice."),
    _age_col(),
]
_STORAGECLASS_COLUMNS = [
    _name_col(),
    _col("Provisioner", "provisioner indicates the type of the provisioner."),
    _col("ReclaimPolicy", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
    _col("VolumeBindingMode", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
    _col("AllowVolumeExpansion", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    _age_col(),
]
_DEFAULT_COLUMNS = [_name_col(), _col("Created At", _CREATED_DOC, type_="date")]

# (group, kind) -> the columns and row printer of upstream's pkg/printers/internalversion; other kinds get the default
# convertor (Name, Created At) as Role and ClusterRole do upstream.
PRINTERS: dict[tuple[str, str], tuple[list[dict[str, Any]], Printer]] = {
    ("", "Pod"): (_POD_COLUMNS, _print_pod),
    ("", "ConfigMap"): (_CONFIGMAP_COLUMNS, _print_configmap),
    ("", "Secret"): (_SECRET_COLUMNS, _print_secret),
    ("", "Service"): (_SERVICE_COLUMNS, _print_service),
    ("", "Namespace"): (_NAMESPACE_COLUMNS, _print_namespace),
    ("", "Endpoints"): (_ENDPOINTS_COLUMNS, _print_endpoints),
    ("", "ServiceAccount"): (_SERVICEACCOUNT_COLUMNS, _print_serviceaccount),
    ("", "PersistentVolumeClaim"): (_PVC_COLUMNS, _print_pvc),
    ("", "PersistentVolume"): (_PV_COLUMNS, _print_pv),
    ("", "Event"): (_EVENT_COLUMNS, _print_event),
    ("apps", "StatefulSet"): (_STATEFULSET_COLUMNS, _print_statefulset),
    ("apps", "Deployment"): (_DEPLOYMENT_COLUMNS, _print_deployment),
    ("apps", "ReplicaSet"): (_REPLICASET_COLUMNS, _print_replicaset),
    ("apps", "ControllerRevision"): (_CONTROLLERREVISION_COLUMNS, _print_controllerrevision),
    ("batch", "Job"): (_JOB_COLUMNS, _print_job),
    ("batch", "CronJob"): (_CRONJOB_COLUMNS, _print_cronjob),
    ("policy", "PodDisruptionBudget"): (_PDB_COLUMNS, _print_pdb),
    ("networking.k8s.io", "NetworkPolicy"): (_NETWORKPOLICY_COLUMNS, _print_networkpolicy),
    ("rbac.authorization.k8s.io", "RoleBinding"): (_binding_columns("roleBinding"), _print_binding),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (_binding_columns("clusterRoleBinding"), _print_binding),
    ("coordination.k8s.io", "Lease"): (_LEASE_COLUMNS, _print_lease),
    ("discovery.k8s.io", "EndpointSlice"): (_ENDPOINTSLICE_COLUMNS, _print_endpointslice),
    ("storage.k8s.io", "StorageClass"): (_STORAGECLASS_COLUMNS, _print_storageclass),
}

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


def table(
    resource: Resource,
    objects: list[dict[str, Any]],
    include_object: str = "Metadata",
    *,
    list_metadata: dict[str, Any] | None = None,
    api_version: str = "meta.k8s.io/v1",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Table kube-apiserver answers a get or list of ``resource`` with when the client asks for ``as=Table``.

    Every column is present (wide ones with priority 1), as the server prints wide and kubectl hides what it does not show.
    ``include_object`` is the ``includeObject`` query parameter (empty means Metadata); ``list_metadata`` becomes the
    Table's metadata (``resourceVersion``, ``continue``, ``remainingItemCount``), the list's or, for a single get, the
    object's resourceVersion.
    """
    mode = include_object or "Metadata"
    if mode not in INCLUDE_OBJECT_VALUES:
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    moment = now or datetime.now(timezone.utc)
    columns, printer = PRINTERS.get((resource.group, resource.kind), (_DEFAULT_COLUMNS, _print_default))
    rows = []
    for obj in objects:
        cells, conditions = printer(obj, moment)
        row: dict[str, Any] = {"cells": cells}
        if conditions:
            row["conditions"] = conditions
        if mode == "Object":
            row["object"] = {"apiVersion": resource.api_version, "kind": resource.kind, **obj}
        elif mode == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": _meta(obj)}
        else:
            row["object"] = None
        rows.append(row)
    metadata = {key: value for key, value in (list_metadata or {}).items() if key in ("resourceVersion", "continue", "remainingItemCount") and value}
    return {"kind": "Table", "apiVersion": api_version, "metadata": metadata, "columnDefinitions": [dict(c) for c in columns], "rows": rows}


# --- OpenAPI v3 -------------------------------------------------------------------------------------------------------

_FIELD_VALIDATION_DOC = (
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate "
    "fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore "
    "all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send "
    "a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate "
    "field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any "
    "duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields "
    "would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all "
    "unknown and duplicate fields encountered."
)
_DRY_RUN_DOC = (
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an "
    "error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"
)
_FIELD_MANAGER_DOC = (
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 "
    "characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."
)
_FORCE_DOC = (
    'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must '
    "be unset for non-apply patch requests."
)
# The patch types PATCH operations advertise. Strategic merge is left out though the server takes it: advertised, it makes
# kubectl's client-side apply build the patch from these documents' schemas, which have no properties ("unable to find api
# field"); unadvertised, kubectl builds it from its compiled-in Go types, the same patch upstream's full schemas give.
PATCH_CONTENT_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")
_RESPONSE_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


def _schema_name(group: str, version: str, kind: str) -> str:
    package = group.split(".")[0] if group else "core"
    return f"io.k8s.api.{package}.{version}.{kind}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, type_: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": type_, "uniqueItems": True}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "description": description, "required": True, "schema": {"type": "string", "uniqueItems": True}}


def _operation_group(group: str, version: str) -> tuple[str, str]:
    """``CoreV1``/``core_v1``, ``RbacAuthorizationV1``/``rbacAuthorization_v1``: how upstream names operations and tags."""
    words = (group.removesuffix(".k8s.io") if group else "core").split(".")
    camel = "".join(word[:1].upper() + word[1:] for word in words)
    tag = camel[:1].lower() + camel[1:] + "_" + version
    return camel + version[:1].upper() + version[1:], tag


def _responses(schema: str, codes: tuple[str, ...] = ("200",)) -> dict[str, Any]:
    """Responses naming ``schema``; the streaming subresources (exec, log) answer ``string``, an inline schema upstream."""
    described = {"200": "OK", "201": "Created", "202": "Accepted"}
    body = {"type": "string"} if schema == "string" else _ref(schema)
    answer: dict[str, Any] = {}
    for code in codes:
        answer[code] = {"description": described[code], "content": {media: {"schema": body} for media in _RESPONSE_TYPES}}
    answer["401"] = {"description": "Unauthorized"}
    return answer


def _operation(action: str, operation_id: str, tag: str, gvk: dict[str, str], schema: str, **extra: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {"tags": [tag], "description": extra.pop("description", f"{action} {gvk['kind']}"), "operationId": operation_id}
    operation.update(extra)
    operation.setdefault("responses", _responses(schema))
    operation["x-kubernetes-action"] = action
    operation["x-kubernetes-group-version-kind"] = gvk
    return operation


def _write_params(patch: bool = False) -> list[dict[str, Any]]:
    params = [_query("dryRun", _DRY_RUN_DOC), _query("fieldManager", _FIELD_MANAGER_DOC), _query("fieldValidation", _FIELD_VALIDATION_DOC)]
    if patch:
        params.append(_query("force", _FORCE_DOC, "boolean"))
    return params


def _patch_operation(operation_id: str, tag: str, gvk: dict[str, str], schema: str) -> dict[str, Any]:
    body = {"content": {media: {"schema": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch")} for media in PATCH_CONTENT_TYPES}, "required": True}
    return _operation(
        "patch",
        operation_id,
        tag,
        gvk,
        schema,
        description=f"partially update the specified {gvk['kind']}",
        parameters=_write_params(patch=True),
        requestBody=body,
        responses=_responses(schema, ("200", "201")),
    )


def _resource_paths(resource: Resource) -> dict[str, Any]:
    prefix = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    base = f"{prefix}/namespaces/{{namespace}}/{resource.plural}" if resource.namespaced else f"{prefix}/{resource.plural}"
    op_group, tag = _operation_group(resource.group, resource.version)
    scoped = ("Namespaced" if resource.namespaced else "") + resource.kind
    gvk = {"group": resource.group, "kind": resource.kind, "version": resource.version}
    schema = _schema_name(resource.group, resource.version, resource.kind)
    shared = [_query("pretty", "If 'true', then the output is pretty printed.")]
    if resource.namespaced:
        shared.insert(0, _path_param("namespace", "object name and auth scope, such as for teams and projects"))
    paths: dict[str, Any] = {}
    collection: dict[str, Any] = {}
    if "list" in resource.verbs:
        collection["get"] = _operation(
            "list", f"list{op_group}{scoped}", tag, gvk, schema + "List", description=f"list or watch objects of kind {resource.kind}"
        )
    if "create" in resource.verbs:
        collection["post"] = _operation(
            "post",
            f"create{op_group}{scoped}",
            tag,
            gvk,
            schema,
            description=f"create a {resource.kind}",
            parameters=_write_params(),
            requestBody={"content": {"*/*": {"schema": _ref(schema)}}, "required": True},
            responses=_responses(schema, ("200", "201", "202")),
        )
    if "deletecollection" in resource.verbs:
        collection["delete"] = _operation("deletecollection", f"delete{op_group}Collection{scoped}", tag, gvk, "io.k8s.apimachinery.pkg.apis.meta.v1.Status")
    if collection:
        paths[base] = {**collection, "parameters": shared}
    if "get" not in resource.verbs:
        return paths
    item_params = [_path_param("name", f"name of the {resource.kind}"), *shared]
    paths[f"{base}/{{name}}"] = {
        "get": _operation("get", f"read{op_group}{scoped}", tag, gvk, schema, description=f"read the specified {resource.kind}"),
        "put": _operation(
            "put",
            f"replace{op_group}{scoped}",
            tag,
            gvk,
            schema,
            description=f"replace the specified {resource.kind}",
            parameters=_write_params(),
            requestBody={"content": {"*/*": {"schema": _ref(schema)}}, "required": True},
            responses=_responses(schema, ("200", "201")),
        ),
        "delete": _operation("delete", f"delete{op_group}{scoped}", tag, gvk, "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
        "patch": _patch_operation(f"patch{op_group}{scoped}", tag, gvk, schema),
        "parameters": item_params,
    }
    for name in resource.subresources:
        spec = resource.subresource(name)
        if spec is None:
            continue
        sub_gvk = {"group": spec.group if spec.group is not None else resource.group, "kind": spec.kind, "version": spec.version or resource.version}
        sub_schema = _schema_name(sub_gvk["group"], sub_gvk["version"], spec.kind)
        suffix = name[:1].upper() + name[1:]
        entry: dict[str, Any] = {"parameters": [_path_param("name", f"name of the {spec.kind}"), *shared]}
        if spec.verbs == STATUS_VERBS:
            entry["get"] = _operation("get", f"read{op_group}{scoped}{suffix}", tag, sub_gvk, sub_schema)
            entry["put"] = _operation("put", f"replace{op_group}{scoped}{suffix}", tag, sub_gvk, sub_schema, parameters=_write_params())
            entry["patch"] = _patch_operation(f"patch{op_group}{scoped}{suffix}", tag, sub_gvk, sub_schema)
        elif name in ("exec", "attach", "portforward"):
            entry["get"] = _operation("connect", f"connectGet{op_group}{scoped}{suffix}", tag, sub_gvk, "string")
            entry["post"] = _operation("connect", f"connectPost{op_group}{scoped}{suffix}", tag, sub_gvk, "string")
        elif name == "log":
            entry["get"] = _operation("get", f"read{op_group}{scoped}{suffix}", tag, sub_gvk, "string")
        else:
            entry["post"] = _operation("post", f"create{op_group}{scoped}{suffix}", tag, sub_gvk, sub_schema, parameters=_write_params())
        paths[f"{base}/{{name}}/{name}"] = entry
    return paths


def _component(group: str, version: str, kind: str, description: str) -> dict[str, Any]:
    return {"description": description, "type": "object", "x-kubernetes-group-version-kind": [{"group": group, "kind": kind, "version": version}]}


def _components(served: list[Resource]) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status": _component("", "v1", "Status", "Status is a return value for calls that don't return other objects."),
    }
    for resource in served:
        name = _schema_name(resource.group, resource.version, resource.kind)
        schemas[name] = _component(resource.group, resource.version, resource.kind, f"{resource.kind} of {resource.api_version}.")
        if resource.list_kind:
            schemas[name + "List"] = _component(resource.group, resource.version, resource.list_kind, f"{resource.list_kind} is a list of {resource.kind}.")
        for sub in resource.subresources:
            spec = resource.subresource(sub)
            if spec is not None and spec.kind != resource.kind:
                group = spec.group if spec.group is not None else resource.group
                version = spec.version or resource.version
                schemas.setdefault(
                    _schema_name(group, version, spec.kind), _component(group, version, spec.kind, f"{spec.kind} of {group or 'core'}/{version}.")
                )
    return {
        "schemas": dict(sorted(schemas.items())),
        "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
    }


def openapi_v3_key(group: str, version: str) -> str:
    """The key of a group version in ``/openapi/v3``: ``api/v1``, ``apis/apps/v1``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


@lru_cache(maxsize=None)
def _openapi_v3_json(group: str, version: str, git_version: str) -> str | None:
    served = _served(group, version)
    if not served:
        return None
    paths: dict[str, Any] = {}
    for resource in served:
        paths.update(_resource_paths(resource))
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": git_version},
        "paths": dict(sorted(paths.items())),
        "components": _components(served),
        "security": [{"BearerToken": []}],
    }
    return json.dumps(document, separators=(",", ":"))


def openapi_v3_document(group: str, version: str, git_version: str = DEFAULT_GIT_VERSION) -> dict[str, Any] | None:
    """``GET /openapi/v3/api/v1`` or ``/openapi/v3/apis/<group>/<version>`` (any ``?hash=`` ignored); None when not served.

    Every PATCH operation carries ``x-kubernetes-group-version-kind`` and the ``fieldValidation`` query parameter, which is
    what kubectl's QueryParamVerifierV3 looks for before it lets the server validate instead of fetching schemas.
    """
    text = _openapi_v3_json(group, version, git_version)
    return None if text is None else json.loads(text)


def openapi_v3_index(git_version: str = DEFAULT_GIT_VERSION) -> dict[str, Any]:
    """``GET /openapi/v3``: each group version's document URL, with upstream's content hash (upper-case hex sha512)."""
    paths = {}
    for group, version in group_versions():
        text = _openapi_v3_json(group, version, git_version) or ""
        digest = hashlib.sha512(text.encode()).hexdigest().upper()
        key = openapi_v3_key(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_for_path(path: str, git_version: str = DEFAULT_GIT_VERSION) -> dict[str, Any] | None:
    """The document for a request path: ``/openapi/v3`` gives the index, ``/openapi/v3/apis/apps/v1?hash=...`` a group version."""
    path = path.split("?", 1)[0].rstrip("/")
    if path == "/openapi/v3":
        return openapi_v3_index(git_version)
    match = re.fullmatch(r"/openapi/v3/api/([^/]+)|/openapi/v3/apis/([^/]+)/([^/]+)", path)
    if not match:
        return None
    if match.group(1):
        return openapi_v3_document("", match.group(1), git_version)
    return openapi_v3_document(match.group(2), match.group(3), git_version)


def discovery_for_path(
    path: str, accept: str = "", server_address: str = "127.0.0.1:6443", git_version: str = DEFAULT_GIT_VERSION
) -> tuple[str, dict[str, Any]] | None:
    """``(content type, document)`` for a discovery, version or OpenAPI v3 path; None for any other path.

    ``/api`` and ``/apis`` answer the aggregated form when ``accept`` asks for it first, as kube-apiserver 1.32 does.
    """
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if path in ("/api", "/apis"):
        if wants_aggregated_discovery(accept):
            return AGGREGATED_DISCOVERY_CONTENT_TYPE, aggregated_discovery(core=path == "/api")
        return "application/json", core_versions(server_address) if path == "/api" else group_list()
    if path == "/version":
        return "application/json", version_info(git_version)
    if path.startswith("/openapi/v3"):
        document = openapi_v3_for_path(path, git_version)
        return None if document is None else ("application/json", document)
    parts = path.strip("/").split("/")
    document: dict[str, Any] | None = None
    if len(parts) == 2 and parts[0] == "api":
        document = resource_list("", parts[1])
    elif len(parts) == 2 and parts[0] == "apis":
        document = api_group(parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        document = resource_list(parts[1], parts[2])
    return None if document is None else ("application/json", document)
