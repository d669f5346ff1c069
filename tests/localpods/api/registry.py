"""What the API server does to an object on each verb: the registry strategies of the real kube-apiserver.

Identity and name checks, the namespace's existence, ``status`` kept apart from the main resource,
``generation`` bumped on spec changes, ``managedFields`` on every write, ``resourceVersion``
preconditions, the four patch types, server-side apply, finalizers, namespace deletion, garbage
collection of dependents, eviction under PodDisruptionBudgets, and the ``scale`` subresource. Writes
that change nothing keep the object's ``resourceVersion``, as on the real server.
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import uuid
from typing import Any, Callable

import yaml

from tests.localpods.api import apply as server_side_apply
from tests.localpods.api import patches
from tests.localpods.api.errors import ApiError, already_exists, bad_request, conflict, invalid, not_found
from tests.localpods.api.resources import Resource, by_kind, find
from tests.localpods.api.selectors import selector_matches
from tests.localpods.api.store import CLUSTER, LocalApiStore, now_rfc3339

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Kinds whose names are DNS labels rather than subdomains, as their registries validate.
LABEL_NAMED = {"Namespace"}
DNS_1035_NAMED = {"Service"}
# Namespaces every cluster has.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def _without_volatile(obj: dict) -> dict:
    """The object without what every write changes, to tell a write that changes nothing."""
    result = copy.deepcopy(obj)
    metadata = result.get("metadata") or {}
    metadata.pop("resourceVersion", None)
    for entry in metadata.get("managedFields") or []:
        entry.pop("time", None)
    return result


def _spec_of(obj: dict) -> dict:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status", "apiVersion", "kind")}


class Registry:
    """The verbs on objects of the served resources, over one store."""

    def __init__(self, store: LocalApiStore) -> None:
        self.store = store
        # Called with (resource, namespace, name) after an object is deleted (the runtime's kubelet and controllers poll the store anyway).
        self.on_delete: list[Callable[[Resource, str | None, str], None]] = []

    # -- reads ---------------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        obj = self.store.get(resource.kind, namespace if resource.namespaced else None, name)
        if obj is None:
            raise not_found(resource.plural, name, resource.group)
        return obj

    def list(self, resource: Resource, namespace: str | None) -> list[dict]:
        if not resource.namespaced:
            return self.store.list(resource.kind, None)
        if namespace is None:
            return self.store.list_all_namespaces(resource.kind)
        return self.store.list(resource.kind, namespace)

    # -- checks --------------------------------------------------------------------------------

    def _check_identity(self, resource: Resource, namespace: str | None, body: Any, name: str | None = None) -> dict:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was not a JSON object")
        body = copy.deepcopy(body)
        api_version = body.get("apiVersion")
        if api_version and api_version != resource.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected API version ({resource.api_version})")
        kind = body.get("kind")
        if kind and kind != resource.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")
        body["apiVersion"], body["kind"] = resource.api_version, resource.kind
        metadata = body.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        if resource.namespaced:
            given = metadata.get("namespace")
            if given and given != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if name is not None:
            if metadata.get("name") and metadata["name"] != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (metadata["name"], name))
            metadata["name"] = name
        return body

    @staticmethod
    def _check_name(resource: Resource, name: str) -> None:
        if resource.kind in LABEL_NAMED:
            pattern, what = (
                DNS_LABEL,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            )
            limit = 63
        elif resource.kind in DNS_1035_NAMED:
            pattern, limit = DNS_1035_LABEL, 63
            what = (
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
                "and end with an alphanumeric character"
            )
        else:
            pattern, limit = DNS_SUBDOMAIN, 253
            what = (
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character"
            )
        if not name or len(name) > limit or not pattern.match(name):
            raise invalid(resource.kind, name, [{"field": "metadata.name", "message": f'Invalid value: "{name}": {what}'}], resource.group)

    def _check_namespace_open(self, resource: Resource, namespace: str | None, name: str) -> None:
        if not resource.namespaced:
            return
        space = self.store.get("Namespace", None, namespace or "")
        if space is None:
            raise not_found("namespaces", namespace or "")
        if (space.get("metadata") or {}).get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{resource.plural} "{name}" is forbidden: unable to create new content in namespace {namespace} because it is being terminated',
                {"causes": [{"reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated", "field": "metadata.namespace"}]},
            )

    # -- writes --------------------------------------------------------------------------------

    def _prepare_create(self, resource: Resource, obj: dict) -> dict:
        """What the client's object says, without the fields only the server sets."""
        metadata = obj["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + "".join(random.choice(GENERATE_ALPHABET) for _position in range(5))
        self._check_name(resource, metadata.get("name") or "")
        for field in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "generation", "managedFields", "selfLink"):
            metadata.pop(field, None)
        if "status" in resource.subresources:
            obj.pop("status", None)
        return obj

    @staticmethod
    def _defaults(resource: Resource, obj: dict) -> dict:
        """The server's defaults on a new object; set after managedFields, so that nobody owns them."""
        metadata = obj["metadata"]
        if resource.kind == "Namespace":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = metadata["name"]
        if _spec_of(obj).get("spec") is not None and resource.kind not in ("Namespace",):
            metadata["generation"] = 1
        return obj

    def create(self, resource: Resource, namespace: str | None, body: Any, manager: str, dry_run: bool = False) -> dict:
        obj = self._prepare_create(resource, self._check_identity(resource, namespace, body))
        with self.store.locked():
            name = obj["metadata"]["name"]
            self._check_namespace_open(resource, namespace, name)
            if self.store.get(resource.kind, namespace if resource.namespaced else None, name) is not None:
                raise already_exists(resource.plural, name, resource.group)
            obj = self._defaults(resource, server_side_apply.record_update(None, obj, manager, now_rfc3339()))
            return self._store_new(obj, dry_run)

    def _store_new(self, obj: dict, dry_run: bool) -> dict:
        metadata = obj["metadata"]
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_rfc3339()
        if dry_run:
            return obj
        return self.store.write_locked(obj)

    def _merge_server_fields(self, resource: Resource, stored: dict, new: dict, subresource: str) -> dict:
        """What a client's write may change: the main resource or only the status."""
        if subresource == "status":
            result = copy.deepcopy(stored)
            result["status"] = copy.deepcopy(new.get("status"))
            if result["status"] is None:
                result.pop("status")
            metadata = result["metadata"]
        else:
            result = copy.deepcopy(new)
            metadata = result.setdefault("metadata", {})
            if "status" in resource.subresources:
                if "status" in stored:
                    result["status"] = copy.deepcopy(stored["status"])
                else:
                    result.pop("status", None)
            if resource.kind == "Namespace":
                result["spec"] = copy.deepcopy(stored.get("spec") or {})
                result["status"] = copy.deepcopy(stored.get("status") or {})
                metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = stored["metadata"]["name"]
        old_metadata = stored["metadata"]
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name"):
            if field in old_metadata:
                metadata[field] = old_metadata[field]
            else:
                metadata.pop(field, None)
        metadata["managedFields"] = copy.deepcopy(old_metadata.get("managedFields") or [])
        if "generation" in old_metadata:
            metadata["generation"] = old_metadata["generation"]
            if subresource != "status" and _spec_of(result) != _spec_of(stored):
                metadata["generation"] = int(old_metadata["generation"]) + 1
        if not metadata["managedFields"]:
            metadata.pop("managedFields")
        return result

    def _finish_write(self, resource: Resource, stored: dict, result: dict, dry_run: bool) -> dict:
        if _without_volatile(result) == _without_volatile(stored):
            return stored
        metadata = result["metadata"]
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            # The last finalizer is gone: the deletion that waited for it completes now.
            if dry_run:
                return result
            deleted = self.store.delete_locked(resource.kind, metadata.get("namespace"), metadata["name"])
            self._after_delete(resource, deleted, "Background")
            return deleted
        if dry_run:
            return result
        return self.store.write_locked(result)

    def live(self, resource: Resource, namespace: str | None, name: str) -> dict | None:
        """The stored object, or None."""
        return self.store.get(resource.kind, namespace if resource.namespaced else None, name)

    def update(self, resource: Resource, namespace: str | None, name: str, body: Any, manager: str, dry_run: bool = False, subresource: str = "") -> dict:
        new = self._check_identity(resource, namespace, body, name)
        with self.store.locked():
            stored = self.live(resource, namespace, name)
            if stored is None:
                raise not_found(resource.plural, name, resource.group)
            wanted = new["metadata"].get("resourceVersion")
            if wanted and wanted != stored["metadata"].get("resourceVersion"):
                raise conflict(resource.plural, name, resource.group)
            result = self._merge_server_fields(resource, stored, new, subresource)
            result = server_side_apply.record_update(stored, result, manager, now_rfc3339(), subresource)
            return self._finish_write(resource, stored, result, dry_run)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        content_type: str,
        raw: bytes,
        manager: str,
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> tuple[dict, bool]:
        """The patched object, and whether it was created (server-side apply creates)."""
        patch_type = PATCH_TYPES.get(content_type.split(";")[0].strip().lower())
        if patch_type is None:
            raise ApiError(
                415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}"
            )
        try:
            body = yaml.safe_load(raw) if patch_type == "apply" else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as error:
            raise bad_request(f"error decoding patch: {error}") from None
        if patch_type == "apply" and not manager:
            raise bad_request("PATCH requests of type application/apply-patch+yaml require a fieldManager")
        with self.store.locked():
            stored = self.live(resource, namespace, name)
            if patch_type == "apply":
                applied = self._check_identity(resource, namespace, body, name)
                if stored is None:
                    if subresource:
                        raise not_found(resource.plural, name, resource.group)
                    self._check_namespace_open(resource, namespace, name)
                    obj = self._prepare_create(resource, applied)
                    obj = self._defaults(resource, server_side_apply.apply(None, obj, manager, force, now_rfc3339()))
                    return self._store_new(obj, dry_run), True
                applied_result = server_side_apply.apply(stored, applied, manager, force, now_rfc3339(), subresource)
                if applied_result is stored:
                    return stored, False
                result = self._merge_server_fields(resource, stored, applied_result, subresource)
                result["metadata"]["managedFields"] = applied_result["metadata"].get("managedFields", [])
                return self._finish_write(resource, stored, result, dry_run), False
            if stored is None:
                raise not_found(resource.plural, name, resource.group)
            if patch_type == "json":
                if not isinstance(body, list):
                    raise bad_request("json patch must be a list of operations")
                patched = patches.json_patch(stored, body)
            elif not isinstance(body, dict):
                raise bad_request("the patch must be a JSON object")
            elif patch_type == "merge":
                patched = patches.merge_patch(stored, body)
            else:
                patched = patches.strategic_merge_patch(stored, body)
            if not isinstance(patched, dict):
                raise bad_request("the patched object is not a JSON object")
            wanted = (patched.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != stored["metadata"].get("resourceVersion"):
                raise conflict(resource.plural, name, resource.group)
            new = self._check_identity(resource, namespace, patched, name)
            result = self._merge_server_fields(resource, stored, new, subresource)
            result = server_side_apply.record_update(stored, result, manager, now_rfc3339(), subresource)
            return self._finish_write(resource, stored, result, dry_run), False

    # -- deletion ------------------------------------------------------------------------------

    def delete(self, resource: Resource, namespace: str | None, name: str, options: dict | None = None, dry_run: bool = False) -> dict:
        """The deleted object, or the object marked for deletion while finalizers remain."""
        options = options or {}
        with self.store.locked():
            stored = self.live(resource, namespace, name)
            if stored is None:
                raise not_found(resource.plural, name, resource.group)
            preconditions = options.get("preconditions") or {}
            metadata = stored["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != metadata.get("uid"):
                raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {metadata.get('uid')}")
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != metadata.get("resourceVersion"):
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, "
                    f"ResourceVersion in object meta: {metadata.get('resourceVersion')}",
                )
            if dry_run:
                return stored
            if resource.kind == "Namespace" or metadata.get("finalizers"):
                if metadata.get("deletionTimestamp"):
                    return stored
                marked = copy.deepcopy(stored)
                marked["metadata"]["deletionTimestamp"] = now_rfc3339()
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                if resource.kind == "Namespace":
                    marked["status"] = {"phase": "Terminating"}
                    result = self.store.write_locked(marked)
                    threading.Thread(target=self._empty_namespace, args=(name,), name=f"namespace-{name}", daemon=True).start()
                    return result
                return self.store.write_locked(marked)
            deleted = self.store.delete_locked(resource.kind, namespace if resource.namespaced else None, name)
        self._after_delete(resource, deleted, options.get("propagationPolicy") or "Background")
        return deleted

    def delete_collection(
        self, resource: Resource, namespace: str | None, keep: Callable[[dict], bool], options: dict | None = None, dry_run: bool = False
    ) -> list[dict]:
        deleted = []
        for obj in self.list(resource, namespace):
            if keep(obj):
                try:
                    deleted.append(self.delete(resource, (obj["metadata"].get("namespace")), obj["metadata"]["name"], options, dry_run))
                except ApiError as error:
                    if error.status != 404:
                        raise
        return deleted

    def _after_delete(self, resource: Resource, deleted: dict, propagation: str) -> None:
        namespace = deleted["metadata"].get("namespace")
        for hook in self.on_delete:
            hook(resource, namespace, deleted["metadata"]["name"])
        if namespace and propagation != "Orphan":
            threading.Thread(target=self._collect_dependents, args=(namespace, deleted["metadata"].get("uid")), daemon=True).start()
        elif namespace:
            self._orphan_dependents(namespace, deleted["metadata"].get("uid"))

    def _dependents(self, namespace: str, uid: str | None) -> list[dict]:
        found = []
        for kind_dir in self.store.kinds_in(namespace):
            for obj in self.store.list(kind_dir, namespace):
                if any(owner.get("uid") == uid for owner in (obj.get("metadata") or {}).get("ownerReferences") or []):
                    found.append(obj)
        return found

    def _collect_dependents(self, namespace: str, uid: str | None) -> None:
        """The garbage collector's background deletion: dependents go after their owner."""
        for obj in self._dependents(namespace, uid):
            resource = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            if resource is None:
                continue
            try:
                self.delete(resource, namespace, obj["metadata"]["name"])
            except ApiError:
                pass

    def _orphan_dependents(self, namespace: str, uid: str | None) -> None:
        with self.store.locked():
            for obj in self._dependents(namespace, uid):
                obj["metadata"]["ownerReferences"] = [owner for owner in obj["metadata"]["ownerReferences"] if owner.get("uid") != uid]
                if not obj["metadata"]["ownerReferences"]:
                    obj["metadata"].pop("ownerReferences")
                self.store.write_locked(obj)

    def _empty_namespace(self, name: str) -> None:
        """The namespace controller: deletes everything in the namespace, then the namespace."""
        for _attempt in range(600):
            left = 0
            for kind_dir in self.store.kinds_in(name):
                for obj in self.store.list(kind_dir, name):
                    left += 1
                    resource = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
                    try:
                        if resource is not None:
                            self.delete(resource, name, obj["metadata"]["name"])
                        else:
                            self.store.delete(obj.get("kind", kind_dir), name, obj["metadata"]["name"])
                    except ApiError:
                        pass
            if not left:
                break
            threading.Event().wait(0.1)
        with self.store.locked():
            if self.store.get("Namespace", None, name) is not None:
                self.store.delete_locked("Namespace", None, name)

    # -- subresources --------------------------------------------------------------------------

    def evict(self, pods: Resource, namespace: str, name: str, body: Any, dry_run: bool = False) -> dict:
        """An Eviction: the pod is deleted unless a PodDisruptionBudget selecting it allows no disruption."""
        pod = self.get(pods, namespace, name)
        labels = (pod.get("metadata") or {}).get("labels") or {}
        budgets = [pdb for pdb in self.store.list("PodDisruptionBudget", namespace) if selector_matches((pdb.get("spec") or {}).get("selector"), labels)]
        if len(budgets) > 1:
            raise ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")
        if budgets and self._disruptions_allowed(budgets[0], namespace) <= 0 and _is_ready(pod):
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {"causes": [{"reason": "DisruptionBudget", "message": f"The disruption budget {budgets[0]['metadata']['name']} needs more healthy pods"}]},
            )
        options = (body or {}).get("deleteOptions") if isinstance(body, dict) else None
        self.delete(pods, namespace, name, options, dry_run)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _disruptions_allowed(self, budget: dict, namespace: str) -> int:
        spec = budget.get("spec") or {}
        selected = [pod for pod in self.store.list("Pod", namespace) if selector_matches(spec.get("selector"), (pod.get("metadata") or {}).get("labels") or {})]
        healthy = sum(1 for pod in selected if _is_ready(pod))
        expected = len(selected)
        for owner in {(ref.get("kind"), ref.get("name")) for pod in selected for ref in (pod["metadata"].get("ownerReferences") or [])}:
            if owner[0] == "StatefulSet":
                sts = self.store.get("StatefulSet", namespace, owner[1])
                if sts is not None:
                    expected = max(expected, int((sts.get("spec") or {}).get("replicas", 1)))

        def count(value: Any) -> int:
            if isinstance(value, str) and value.endswith("%"):
                return -(-expected * int(value[:-1]) // 100)
            return int(value)

        if "minAvailable" in spec:
            return healthy - count(spec["minAvailable"])
        if "maxUnavailable" in spec:
            return count(spec["maxUnavailable"]) - (expected - healthy)
        return 1

    def scale(self, resource: Resource, namespace: str, name: str) -> dict:
        obj = self.get(resource, namespace, name)
        metadata = obj["metadata"]
        selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {key: metadata[key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if key in metadata},
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)), "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))},
        }

    def set_scale(self, resource: Resource, namespace: str, name: str, replicas: Any, manager: str, dry_run: bool = False) -> dict:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(
                "Scale", name, [{"field": "spec.replicas", "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0"}], "autoscaling"
            )
        obj = self.get(resource, namespace, name)
        obj["spec"]["replicas"] = replicas
        self.update(resource, namespace, name, obj, manager, dry_run)
        return self.scale(resource, namespace, name)

    # -- startup -------------------------------------------------------------------------------

    def ensure_system_namespaces(self) -> None:
        namespaces = find("", "v1", "namespaces")
        for name in SYSTEM_NAMESPACES:
            if self.store.get("Namespace", None, name) is None:
                try:
                    self.create(namespaces, None, {"metadata": {"name": name}}, "kube-apiserver")
                except ApiError as error:
                    if error.status != 409:
                        raise


def _is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in ((pod.get("status") or {}).get("conditions") or []))


__all__ = ["CLUSTER", "PATCH_TYPES", "Registry"]
