"""Server-side apply and ``metadata.managedFields`` bookkeeping of the local API server, as pure functions.

This follows the kube-apiserver's field manager (k8s.io/apiserver managedfields) over sigs.k8s.io/structured-merge-diff:
``apply`` merges an applied configuration into the live object, prunes what its manager stopped applying, detects
conflicts with other managers and records ownership; ``record_update`` records which fields a create, update or
non-apply patch set. Field sets are kept as Python sets of paths (tuples of path elements ``("f", name)``,
``("k", key_json)``, ``("v", value_json)``, ``("i", index)``) and serialised to the ``fieldsV1`` JSON upstream writes.
List types come from ``patches.LIST_FIELDS``; the atomic structs and the always-present parts of each kind are here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import ApiError, bad_request
from .patches import CONTAINER_LISTS, POD_SPEC_PATHS, FieldPath, ListField, json_equal, list_field

PathElement = tuple[str, Any]
Path = tuple[PathElement, ...]

APPLY = "Apply"
UPDATE = "Update"
FIELDS_TYPE = "FieldsV1"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
# kubectl's default field manager for `apply --server-side`; upstream treats it specially for client-side apply upgrades.
KUBECTL_MANAGER = "kubectl"
BEFORE_FIRST_APPLY_MANAGER = "before-first-apply"
ANCIENT_CHANGES_MANAGER = "ancient-changes"
MAX_UPDATE_MANAGERS = 10
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def _field(*names: str) -> Path:
    return tuple(("f", name) for name in names)


# Fields upstream's stripMetaManager never records as owned.
UNTRACKED_PATHS: frozenset[Path] = frozenset(
    [
        _field("apiVersion"),
        _field("kind"),
        _field("metadata"),
        *(
            _field("metadata", name)
            for name in ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields", "resourceVersion")
        ),
    ]
)

# Structs and maps declared atomic (x-kubernetes-map-type: atomic): owned and replaced as one value. For a keyed
# list's path, the entry means its items are atomic.
COMMON_ATOMIC_MAPS: frozenset[FieldPath] = frozenset({("metadata", "ownerReferences")})

_POD_SPEC_ATOMIC_MAPS: tuple[FieldPath, ...] = (
    ("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"),
    ("imagePullSecrets",),
    *(
        (container_list, "env", "valueFrom", reference)
        for container_list in CONTAINER_LISTS
        for reference in ("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")
    ),
)

_KIND_ATOMIC_MAPS: dict[str, tuple[FieldPath, ...]] = {
    "Deployment": (("spec", "selector"),),
    "StatefulSet": (("spec", "selector"),),
    "DaemonSet": (("spec", "selector"),),
    "ReplicaSet": (("spec", "selector"),),
    "Job": (("spec", "selector"),),
    "CronJob": (("spec", "jobTemplate", "spec", "selector"),),
    "Service": (("spec", "selector"),),
    "PersistentVolumeClaim": (("spec", "selector"),),
    "PodDisruptionBudget": (("spec", "selector"),),
    "NetworkPolicy": (("spec", "podSelector"),),
    "RoleBinding": (("roleRef",),),
    "ClusterRoleBinding": (("roleRef",),),
}


def _template_paths(prefix: FieldPath) -> list[FieldPath]:
    return [prefix + ("template",), prefix + ("template", "metadata"), prefix + ("template", "spec"), prefix + ("template", "spec", "containers")]


# Parts of a built-in object that its Go type always serialises (non-pointer structs, the containers list), so an
# update never counts them as added: upstream records no "." for them on create.
_KIND_ALWAYS_PRESENT: dict[str, list[FieldPath]] = {
    "Pod": [("spec",), ("status",), ("spec", "containers")],
    "PodTemplate": [("template",), ("template", "metadata"), ("template", "spec"), ("template", "spec", "containers")],
    "Deployment": [("spec",), ("status",), ("spec", "strategy"), *_template_paths(("spec",))],
    "StatefulSet": [("spec",), ("status",), ("spec", "updateStrategy"), *_template_paths(("spec",))],
    "DaemonSet": [("spec",), ("status",), ("spec", "updateStrategy"), *_template_paths(("spec",))],
    "ReplicaSet": [("spec",), ("status",), *_template_paths(("spec",))],
    "Job": [("spec",), ("status",), *_template_paths(("spec",))],
    "CronJob": [
        ("spec",),
        ("status",),
        ("spec", "jobTemplate"),
        ("spec", "jobTemplate", "metadata"),
        ("spec", "jobTemplate", "spec"),
        *_template_paths(("spec", "jobTemplate", "spec")),
    ],
    "Service": [("spec",), ("status",), ("status", "loadBalancer")],
    "PersistentVolumeClaim": [("spec",), ("spec", "resources"), ("status",)],
    "Namespace": [("spec",), ("status",)],
    "NetworkPolicy": [("spec",)],
    "PodDisruptionBudget": [("spec",), ("status",)],
    "Lease": [("spec",)],
    "ConfigMap": [],
    "Secret": [],
    "ServiceAccount": [],
    "Role": [],
    "RoleBinding": [],
}


def _atomic_maps(kind: str) -> frozenset[FieldPath]:
    paths = set(COMMON_ATOMIC_MAPS) | set(_KIND_ATOMIC_MAPS.get(kind, ()))
    prefix = POD_SPEC_PATHS.get(kind)
    if prefix is not None:
        paths.update(prefix + path for path in _POD_SPEC_ATOMIC_MAPS)
    return frozenset(paths)


ATOMIC_MAPS: dict[str, frozenset[FieldPath]] = {kind: _atomic_maps(kind) for kind in set(_KIND_ATOMIC_MAPS) | set(POD_SPEC_PATHS) | set(_KIND_ALWAYS_PRESENT)}
ALWAYS_PRESENT: dict[str, frozenset[FieldPath]] = {kind: frozenset([("metadata",), *paths]) for kind, paths in _KIND_ALWAYS_PRESENT.items()}


class _Missing:
    """Marks an absent member, as opposed to a JSON null."""


MISSING = _Missing()


# --- path elements and fieldsV1 ----------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys, the form upstream uses inside ``k:`` and ``v:`` path elements."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _value_order(value: Any) -> tuple[int, Any]:
    """structured-merge-diff's total order of values: numbers, strings, booleans, lists, maps, null."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, canonical_json(value))
    if isinstance(value, dict):
        return (4, canonical_json(value))
    return (5, 0)


def _element_order(element: PathElement) -> tuple[Any, ...]:
    """Field names sort before keys, keys before values, values before indices (fieldpath.PathElement.Compare)."""
    kind, raw = element
    if kind == "f":
        return (0, raw)
    if kind == "k":
        key = json.loads(raw)
        return (1, tuple((name, _value_order(key[name])) for name in sorted(key)))
    if kind == "v":
        return (2, _value_order(json.loads(raw)))
    return (3, raw)


def _element_text(element: PathElement) -> str:
    kind, raw = element
    return f"{kind}:{raw}"


def _parse_element(text: str) -> PathElement:
    kind, separator, raw = text.partition(":")
    if not separator:
        raise ValueError(f"invalid path element {text!r}")
    if kind == "f":
        return ("f", raw)
    if kind == "k":
        key = json.loads(raw)
        if not isinstance(key, dict):
            raise ValueError(f"invalid key {raw!r}")
        return ("k", canonical_json(key))
    if kind == "v":
        return ("v", canonical_json(json.loads(raw)))
    if kind == "i":
        return ("i", int(raw))
    raise ValueError(f"invalid path element {text!r}")


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _go_value_text(value: Any) -> str:
    """value.ToString of structured-merge-diff: strings quoted, numbers and booleans bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, list):
        return "[" + ",".join(_go_value_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "".join(f"{key}={_go_value_text(value[key])}" for key in sorted(value))
    return str(value)


def path_string(path: Path) -> str:
    """A path the way upstream prints it in conflicts: ``.spec.containers[name="app"].image``, ``.metadata.finalizers[="x"]``."""
    parts = []
    for kind, raw in path:
        if kind == "f":
            parts.append("." + raw)
        elif kind == "k":
            key = json.loads(raw)
            parts.append("[" + ",".join(f"{name}={_go_value_text(key[name])}" for name in sorted(key)) + "]")
        elif kind == "v":
            parts.append("[=" + _go_value_text(json.loads(raw)) + "]")
        else:
            parts.append(f"[{raw}]")
    return "".join(parts)


@dataclass
class _Node:
    member: bool = False
    children: dict[PathElement, _Node] = field(default_factory=dict)


def _trie(paths: Iterable[Path]) -> _Node:
    root = _Node()
    for path in paths:
        node = root
        for element in path:
            node = node.children.setdefault(element, _Node())
        node.member = True
    return root


def _render(node: _Node) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    if node.member and node.children:
        rendered["."] = {}
    for element in sorted(node.children, key=_element_order):
        rendered[_element_text(element)] = _render(node.children[element])
    return rendered


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Serialise a set of paths as upstream's fieldsV1 (a member with children carries ``".": {}``)."""
    return _render(_trie(paths))


def parse_fields_v1(tree: Any) -> set[Path]:
    """The set of paths a fieldsV1 document holds; raises ValueError when it is malformed."""
    paths: set[Path] = set()
    _parse_into(tree, (), paths)
    return paths


def _parse_into(tree: Any, prefix: Path, paths: set[Path]) -> None:
    if not isinstance(tree, dict):
        raise ValueError("fieldsV1 nodes must be objects")
    for text, subtree in tree.items():
        if text == ".":
            if prefix:
                paths.add(prefix)
            continue
        path = prefix + (_parse_element(text),)
        if subtree == {}:
            paths.add(path)
        else:
            _parse_into(subtree, path, paths)


def _iteration_order(paths: set[Path]) -> list[Path]:
    """fieldpath.Set.Iterate's order: at each level the members first, then each child's subtree, all sorted."""
    ordered: list[Path] = []

    def visit(node: _Node, prefix: Path) -> None:
        elements = sorted(node.children, key=_element_order)
        ordered.extend(prefix + (element,) for element in elements if node.children[element].member)
        for element in elements:
            if node.children[element].children:
                visit(node.children[element], prefix + (element,))

    visit(_trie(paths), ())
    return ordered


def _with_named_parents(paths: Iterable[Path]) -> set[Path]:
    """EnsureNamedFieldsAreMembers: every field a path goes through counts as a member too (list items do not)."""
    expanded = set(paths)
    for path in list(expanded):
        for end in range(1, len(path)):
            if path[end - 1][0] == "f":
                expanded.add(path[:end])
    return expanded


def _untracked_removed(paths: set[Path]) -> set[Path]:
    return paths - UNTRACKED_PATHS


def _status_only(paths: set[Path]) -> set[Path]:
    return {path for path in paths if path[:1] == (("f", "status"),)}


# --- the typed walkers -------------------------------------------------------------------------------------------


@dataclass
class _Comparison:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)


def _object_label(obj: dict[str, Any]) -> str:
    """objectGVKNN: ``namespace/name; group/version, Kind=kind``, as upstream's typed conversion errors name objects."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    api_version = str(obj.get("apiVersion", ""))
    group_version = api_version if "/" in api_version else "/" + api_version
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}; {group_version}, Kind={obj.get('kind', '')}"


class _Schema:
    """The shape rules of one kind: which lists are keyed or sets, which maps are atomic, what always exists."""

    def __init__(self, kind: str, label: str = "") -> None:
        self.kind = kind
        self.label = label
        self.atomic_maps = ATOMIC_MAPS.get(kind, COMMON_ATOMIC_MAPS)
        self.always_present = ALWAYS_PRESENT.get(kind, frozenset())

    def keyed_list(self, names: FieldPath) -> ListField | None:
        spec = list_field(self.kind, names)
        return spec if spec is not None and spec.apply_type in ("map", "set") else None

    def shape(self, value: Any, names: FieldPath) -> str:
        """``missing``, ``map`` (merged per field), ``list`` (merged per item) or ``leaf`` (scalars and atomics)."""
        if value is MISSING:
            return "missing"
        if isinstance(value, dict):
            return "leaf" if names in self.atomic_maps else "map"
        if isinstance(value, list) and self.keyed_list(names) is not None:
            return "list"
        return "leaf"

    def failure(self, path: Path, message: str) -> ApiError:
        # A plain error in upstream's typed conversion, which the apiserver answers with a 500 and no reason.
        return ApiError(500, "", f"failed to create typed patch object ({self.label}): {path_string(path)}: {message}")

    def items(self, spec: ListField, items: list[Any], path: Path, strict: bool) -> list[tuple[PathElement, Any]]:
        """Each item with its path element; live objects are read leniently (bad or duplicate items fall back to indices)."""
        indexed: list[tuple[PathElement, Any]] = []
        seen: set[PathElement] = set()
        for index, item in enumerate(items):
            element = self._item_element(spec, item, index, path, strict)
            if element in seen:
                if strict:
                    raise self.failure(path, f"duplicate entries for key {path_string((element,))}")
                element = ("i", index)
            seen.add(element)
            indexed.append((element, item))
        return indexed

    def _item_element(self, spec: ListField, item: Any, index: int, path: Path, strict: bool) -> PathElement:
        if spec.apply_type == "set":
            if isinstance(item, (dict, list)):
                if strict:
                    raise self.failure(path, f"element {index}: expected a scalar in a set")
                return ("i", index)
            return ("v", canonical_json(item))
        if not isinstance(item, dict):
            if strict:
                raise self.failure(path, f"element {index}: expected map, got {canonical_json(item)}")
            return ("i", index)
        key: dict[str, Any] = {}
        for name in spec.apply_keys:
            if item.get(name) is not None:
                key[name] = item[name]
            elif name in spec.key_defaults:
                key[name] = spec.key_defaults[name]
            elif strict:
                raise self.failure(
                    path, f'element {index}: associative list with keys has an element that omits key field "{name}" (and doesn\'t have default value)'
                )
            else:
                return ("i", index)
        return ("k", canonical_json(key))


def _is_managed_fields(names: FieldPath) -> bool:
    return names == ("metadata", "managedFields")


def _collect(schema: _Schema, value: Any, names: FieldPath, path: Path, paths: set[Path], strict: bool) -> None:
    """ToFieldSet: scalars, atomics and list items are members; empty maps and empty keyed lists claim nothing."""
    if isinstance(value, dict):
        if path and names in schema.atomic_maps:
            paths.add(path)
            return
        for key, child in value.items():
            if not _is_managed_fields(names + (key,)):
                _collect(schema, child, names + (key,), path + (("f", key),), paths, strict)
        return
    if isinstance(value, list):
        spec = schema.keyed_list(names)
        if spec is None:
            paths.add(path)
            return
        for element, item in schema.items(spec, value, path, strict):
            if spec.apply_type == "map" and isinstance(item, dict):
                _collect(schema, item, names, path + (element,), paths, strict)
            paths.add(path + (element,))
        return
    paths.add(path)


def _object_paths(schema: _Schema, obj: dict[str, Any], strict: bool) -> set[Path]:
    paths: set[Path] = set()
    _collect(schema, obj, (), (), paths, strict)
    return paths


def field_set(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The fieldsV1 JSON of the fields ``obj`` sets, as an Apply of it would own them (identity fields excluded)."""
    schema = _Schema(kind, _object_label(obj))
    return fields_v1(_untracked_removed(_object_paths(schema, obj, strict=True)))


def _compare(schema: _Schema, old: Any, new: Any, skip_always_present: bool) -> _Comparison:
    comparison = _Comparison()
    _compare_into(schema, old, new, (), (), comparison, skip_always_present)
    return comparison


def _compare_into(schema: _Schema, old: Any, new: Any, names: FieldPath, path: Path, result: _Comparison, skip_always_present: bool) -> None:
    """Compare of structured-merge-diff: leaves are added, removed or modified; non-leaf nodes added or removed."""
    shapes = {schema.shape(old, names), schema.shape(new, names)} - {"missing"}
    old_is, new_is = old is not MISSING, new is not MISSING
    if shapes == {"map"}:
        old_map = old if old_is else {}
        new_map = new if new_is else {}
        if old_map or new_map:
            for key in dict.fromkeys([*old_map, *new_map]):
                if not _is_managed_fields(names + (key,)):
                    child_old, child_new = old_map.get(key, MISSING), new_map.get(key, MISSING)
                    _compare_into(schema, child_old, child_new, names + (key,), path + (("f", key),), result, skip_always_present)
            _record_node(schema, old_is, new_is, names, path, result, skip_always_present)
            return
    elif shapes == {"list"}:
        spec = schema.keyed_list(names)
        assert spec is not None
        old_items = dict(schema.items(spec, old, path, False)) if old_is else {}
        new_items = dict(schema.items(spec, new, path, False)) if new_is else {}
        if old_items or new_items:
            for element in dict.fromkeys([*old_items, *new_items]):
                child_old, child_new = old_items.get(element, MISSING), new_items.get(element, MISSING)
                _compare_into(schema, child_old, child_new, names, path + (element,), result, skip_always_present)
            _record_node(schema, old_is, new_is, names, path, result, skip_always_present)
            return
    if not path:
        return
    if not old_is:
        result.added.add(path)
    elif not new_is:
        result.removed.add(path)
    elif not json_equal(old, new):
        result.modified.add(path)


def _record_node(schema: _Schema, old_is: bool, new_is: bool, names: FieldPath, path: Path, result: _Comparison, skip_always_present: bool) -> None:
    if not path:
        return
    if not old_is:
        always_there = skip_always_present and all(kind == "f" for kind, _value in path) and names in schema.always_present
        if not always_there:
            result.added.add(path)
    elif not new_is:
        result.removed.add(path)


def _merge(schema: _Schema, live: Any, applied: Any, names: FieldPath) -> Any:
    """Merge with the applied value winning at leaves; maps merge per field, keyed lists per item, atomics replace."""
    applied_shape, live_shape = schema.shape(applied, names), schema.shape(live, names)
    if applied_shape == "map" and live_shape in ("map", "missing"):
        merged = dict(live) if live_shape == "map" else {}
        for key, value in applied.items():
            child_names = names + (key,)
            current = merged.get(key, MISSING)
            if value is None:
                # A null keeps a non-empty map or list as it is (null is a wildcard upstream); it clears anything else.
                if not (schema.shape(current, child_names) in ("map", "list") and current):
                    merged.pop(key, None)
                continue
            merged[key] = _merge(schema, current, value, child_names)
        return merged
    if applied_shape == "list" and live_shape in ("list", "missing"):
        return _merge_list(schema, live if live_shape == "list" else [], applied, names)
    return copy.deepcopy(applied)


def _merge_list(schema: _Schema, live: list[Any], applied: list[Any], names: FieldPath) -> list[Any]:
    """Keyed list merge in structured-merge-diff's order: applied items keep their order, live-only items their place."""
    spec = schema.keyed_list(names)
    assert spec is not None
    live_items = schema.items(spec, live, (), False)
    applied_items = schema.items(spec, applied, (), False)
    live_by, applied_by = dict(live_items), dict(applied_items)
    live_order, applied_order = [element for element, _item in live_items], [element for element, _item in applied_items]
    shared = [element for element in applied_order if element in live_by]
    next_shared = shared.pop(0) if shared else None
    merged: list[Any] = []

    def merged_item(element: PathElement) -> Any:
        if spec.apply_type == "set":
            return copy.deepcopy(applied_by[element])
        return _merge(schema, live_by.get(element, MISSING), applied_by[element], names)

    live_index = applied_index = 0
    while live_index < len(live_order) or applied_index < len(applied_order):
        if live_index < len(live_order) and applied_index < len(applied_order):
            element = live_order[live_index]
            if element == applied_order[applied_index]:
                merged.append(merged_item(element))
                live_index += 1
                applied_index += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if element in applied_by and next_shared is not None and next_shared != element:
                # A shared item the applied list places later: it is emitted when the applied side reaches it.
                live_index += 1
                continue
        if live_index < len(live_order):
            element = live_order[live_index]
            if element not in applied_by:
                merged.append(live_by[element])
                live_index += 1
                continue
        if applied_index < len(applied_order):
            element = applied_order[applied_index]
            merged.append(merged_item(element))
            applied_index += 1
            if next_shared == element:
                next_shared = shared.pop(0) if shared else None
        else:
            live_index += 1
    return merged


def _remove_paths(schema: _Schema, value: Any, doomed: set[Path]) -> Any:
    prefixes = {path[:end] for path in doomed for end in range(1, len(path))}
    return _remove_into(schema, value, (), (), doomed, prefixes)


def _remove_into(schema: _Schema, value: Any, names: FieldPath, path: Path, doomed: set[Path], prefixes: set[Path]) -> Any:
    """RemoveItems: drop every doomed member; a map or list emptied by the removal disappears with it (null upstream)."""
    shape = schema.shape(value, names)
    if shape == "map":
        kept: dict[str, Any] = {}
        for key, child in value.items():
            child_path = path + (("f", key),)
            if child_path in doomed:
                continue
            if child_path in prefixes:
                child = _remove_into(schema, child, names + (key,), child_path, doomed, prefixes)
                if child == {} or child == []:
                    continue
            kept[key] = child
        return kept
    if shape == "list":
        spec = schema.keyed_list(names)
        assert spec is not None
        items = []
        for element, item in schema.items(spec, value, path, False):
            item_path = path + (element,)
            if item_path in doomed:
                continue
            items.append(_remove_into(schema, item, names, item_path, doomed, prefixes) if item_path in prefixes else item)
        return items
    return value


# --- managers ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagerKey:
    """A managedFields identity: appliers are one entry whatever the version, updaters one per version."""

    manager: str
    operation: str
    api_version: str = ""
    subresource: str = ""

    def identifier(self) -> str:
        """The JSON identifier upstream builds (and sorts conflicts by): manager, operation, apiVersion, subresource."""
        encoded: dict[str, str] = {}
        if self.manager:
            encoded["manager"] = self.manager
        encoded["operation"] = self.operation
        if self.api_version:
            encoded["apiVersion"] = self.api_version
        if self.subresource:
            encoded["subresource"] = self.subresource
        return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)

    def describe(self) -> str:
        """printManager: ``"name"``, ``"name" with subresource "status"``, plus ``using <apiVersion>`` for updaters."""
        text = _go_quote(self.manager)
        if self.subresource:
            text += f" with subresource {_go_quote(self.subresource)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text


@dataclass
class _Entry:
    api_version: str
    time: str | None
    fields: set[Path]


Managers = dict[ManagerKey, _Entry]


def _decode_entries(entries: Any) -> Managers | None:
    """Decode managedFields entries; None when any entry is malformed (upstream rejects the whole list)."""
    if not isinstance(entries, list):
        return None
    managers: Managers = {}
    for raw in entries:
        if not isinstance(raw, dict) or raw.get("operation") not in (APPLY, UPDATE) or not raw.get("apiVersion"):
            return None
        if raw.get("fieldsType") != FIELDS_TYPE:
            return None
        try:
            fields_owned = parse_fields_v1(raw.get("fieldsV1") or {})
        except (ValueError, TypeError):
            return None
        operation = raw["operation"]
        key = ManagerKey(str(raw.get("manager", "")), operation, str(raw["apiVersion"]) if operation == UPDATE else "", str(raw.get("subresource", "")))
        managers[key] = _Entry(str(raw["apiVersion"]), raw.get("time"), fields_owned)
    return managers


def _managed_fields_of(obj: dict[str, Any] | None) -> Any:
    metadata = obj.get("metadata") if obj else None
    return metadata.get("managedFields") if isinstance(metadata, dict) else None


def _decode_managers(obj: dict[str, Any] | None) -> Managers:
    # A live object whose managedFields cannot be decoded is treated as unmanaged, as upstream does for updates.
    return _decode_entries(_managed_fields_of(obj) or []) or {}


def _seconds(time: str | None) -> float:
    if not time:
        return 0
    try:
        return int(datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _encode_managers(managers: Managers) -> list[dict[str, Any]]:
    """Entries in upstream's order: Apply before Update, then by time, manager, apiVersion and subresource."""
    ordered = sorted(managers.items(), key=lambda item: (item[0].operation, _seconds(item[1].time), item[0].manager, item[1].api_version, item[0].subresource))
    encoded = []
    for key, entry in ordered:
        record: dict[str, Any] = {"manager": key.manager, "operation": key.operation, "apiVersion": entry.api_version}
        if entry.time:
            record["time"] = entry.time
        record["fieldsType"] = FIELDS_TYPE
        record["fieldsV1"] = fields_v1(entry.fields)
        if key.subresource:
            record["subresource"] = key.subresource
        encoded.append(record)
    return encoded


def _copy_managers(managers: Managers) -> Managers:
    return {key: _Entry(entry.api_version, entry.time, set(entry.fields)) for key, entry in managers.items()}


def _cap_update_managers(managers: Managers) -> None:
    """Fold the oldest updaters into one "ancient-changes" entry per version once there are more than ten."""
    updaters = sorted((key for key in managers if key.operation == UPDATE), key=lambda key: (_seconds(managers[key].time), key.identifier()))
    remaining = len(updaters)
    first_by_version: dict[str, ManagerKey] = {}
    for key in updaters:
        if remaining <= MAX_UPDATE_MANAGERS:
            break
        entry = managers[key]
        bucket = ManagerKey(ANCIENT_CHANGES_MANAGER, UPDATE, entry.api_version)
        if key == bucket:
            continue
        first = first_by_version.get(entry.api_version)
        if first is None:
            first_by_version[entry.api_version] = key
            continue
        if bucket not in managers:
            managers[bucket] = managers.pop(first)
        managers[bucket] = _Entry(entry.api_version, entry.time, managers[bucket].fields | entry.fields)
        del managers[key]
        remaining -= 1


def _without_times(entries: Any) -> Any:
    if not isinstance(entries, list):
        return entries
    return [{name: value for name, value in entry.items() if name != "time"} if isinstance(entry, dict) else entry for entry in entries]


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``obj`` without ``metadata.managedFields``."""
    content = copy.deepcopy(obj)
    metadata = content.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return content


def _set_managed_fields(obj: dict[str, Any], entries: list[dict[str, Any]] | None) -> None:
    metadata = obj.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)


def _conflict_error(conflicts: dict[ManagerKey, set[Path]]) -> ApiError:
    """409 Conflict with upstream's message (one line, or grouped by manager) and one FieldManagerConflict cause per field."""
    managers = sorted(conflicts, key=ManagerKey.identifier)
    pairs = [(key, path) for key in managers for path in _iteration_order(conflicts[key])]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {key.describe()}", "field": path_string(path)} for key, path in pairs]
    if len(pairs) == 1:
        key, path = pairs[0]
        message = f"Apply failed with 1 conflict: conflict with {key.describe()}: {path_string(path)}"
    else:
        lines = []
        for key in managers:
            lines.append(f"conflicts with {key.describe()}:")
            lines.extend(f"- {path_string(path)}" for path in _iteration_order(conflicts[key]))
        message = f"Apply failed with {len(pairs)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


# --- client-side apply interplay ---------------------------------------------------------------------------------


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _last_applied_allowance(schema: _Schema, live: dict[str, Any]) -> set[Path]:
    """Fields kubectl's last-applied annotation holds with the live value: kubectl may take them over without force."""
    raw = _annotations(live).get(LAST_APPLIED_ANNOTATION)
    if not raw:
        return set()
    try:
        last_applied = json.loads(raw)
    except ValueError:
        return set()
    if not isinstance(last_applied, dict):
        return set()
    comparison = _compare(schema, last_applied, live, skip_always_present=False)
    return _object_paths(schema, last_applied, strict=False) - comparison.modified - comparison.added - comparison.removed


def build_last_applied(applied: dict[str, Any]) -> str:
    """The annotation value upstream writes: the applied object without the annotation, as Go's JSON encoder emits it."""
    obj = copy.deepcopy(applied)
    annotations = _annotations(obj)
    annotations.pop(LAST_APPLIED_ANNOTATION, None)
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for character, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(character, escaped)
    return text + "\n"


def _sync_last_applied(result: dict[str, Any], applied: dict[str, Any]) -> None:
    annotations = _annotations(result)
    annotations[LAST_APPLIED_ANNOTATION] = build_last_applied(applied)
    if sum(len(key) + len(str(value)) for key, value in annotations.items()) > TOTAL_ANNOTATION_SIZE_LIMIT:
        del annotations[LAST_APPLIED_ANNOTATION]


# --- the operations ----------------------------------------------------------------------------------------------


def _record_changes(
    schema: _Schema, old: dict[str, Any], new: dict[str, Any], base: Managers, key: ManagerKey, now: str, subresource: str
) -> tuple[Managers, bool]:
    """An Update by ``key``: it takes every field the write added or changed; removed fields leave every manager."""
    comparison = _compare(schema, old, new, skip_always_present=True)
    changed = _untracked_removed(comparison.modified | comparison.added)
    removed = _untracked_removed(comparison.removed)
    if subresource == "status":
        changed, removed = _status_only(changed), _status_only(removed)
    managers = _copy_managers(base)
    for other, entry in managers.items():
        if other != key:
            entry.fields -= changed | removed
    current = managers.get(key)
    owned = (current.fields - removed if current else set()) | changed
    time = now if changed else (current.time if current else None)
    managers[key] = _Entry(key.api_version, time, owned)
    return {manager: entry for manager, entry in managers.items() if entry.fields}, bool(changed or removed)


def _is_reset(entries: Any) -> bool:
    """An explicit ``[]`` or ``[{}]`` asks for managedFields to be cleared."""
    return isinstance(entries, list) and (entries == [] or entries == [{}])


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, now: str, subresource: str = "") -> dict[str, Any]:
    """Record a create (``old`` None), update or non-apply patch by ``manager`` in a copy of ``new``'s managedFields.

    The manager (operation Update) takes the fields the write set or changed, other managers lose them (an update
    never conflicts) and removed fields leave everyone. managedFields supplied in ``new`` replace the live ones
    (``[]``/``[{}]`` clears them) except on subresources. An unchanged object keeps ``old``'s managedFields as they were.
    """
    kind = str(new.get("kind") or (old or {}).get("kind") or "")
    schema = _Schema(kind, _object_label(new))
    result = _content(new)
    supplied = _managed_fields_of(new)
    old_content = _content(old) if old is not None else {}
    old_managers = _decode_managers(old)
    base = old_managers
    if not subresource and supplied is not None:
        if _is_reset(supplied):
            base = {}
        else:
            base = _decode_entries(supplied) or old_managers
    key = ManagerKey(manager, UPDATE, str(new.get("apiVersion", "")), subresource)
    managers, changed = _record_changes(schema, old_content, result, base, key, now, subresource)
    if not changed and base is old_managers:
        _set_managed_fields(result, copy.deepcopy(_managed_fields_of(old)))
        return result
    _cap_update_managers(managers)
    _set_managed_fields(result, _encode_managers(managers))
    return result


def apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str, force: bool, now: str, subresource: str = "") -> dict[str, Any]:
    """Server-side apply of ``applied`` by ``manager`` onto ``live`` (None: a create); returns the new object.

    Raises ApiError 409 Conflict when the configuration changes fields other managers own (unless ``force``), 400
    for managedFields in the configuration or a version mismatch, and 500 for configurations upstream cannot type
    (keyed list items without their key, duplicates). When nothing changes, ``live`` itself is returned.
    """
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the applied configuration must be an object")
    metadata = applied.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    if live is not None and applied.get("apiVersion") != live.get("apiVersion"):
        raise bad_request(
            f"Incorrect version specified in apply patch. Specified patch version: {applied.get('apiVersion', '')}, expected: {live.get('apiVersion', '')}"
        )
    kind = str(applied.get("kind") or (live or {}).get("kind") or "")
    schema = _Schema(kind, _object_label(applied))
    live_content = _content(live) if live is not None else {}
    managers = _decode_managers(live)
    if live is not None and not managers:
        # Objects nobody manages yet: upstream first records their current fields for "before-first-apply".
        first_key = ManagerKey(BEFORE_FIRST_APPLY_MANAGER, UPDATE, str(live.get("apiVersion", "")))
        managers, _changed = _record_changes(schema, {}, live_content, {}, first_key, now, "")

    if subresource == "status":
        config: dict[str, Any] = {"status": copy.deepcopy(applied["status"])} if "status" in applied else {}
    else:
        config = copy.deepcopy(applied)
    config_paths = _object_paths(schema, config, strict=True)
    key = ManagerKey(manager, APPLY, "", subresource)
    previous = managers.get(key)

    merged = _merge(schema, copy.deepcopy(live_content), config, ())
    working = _copy_managers(managers)
    working[key] = _Entry(str(applied.get("apiVersion", "")), previous.time if previous else None, config_paths)
    if previous is not None and previous.fields:
        # Prune what this manager applied last time and dropped now, unless any manager (this one included) owns it.
        owned = set().union(*(entry.fields for entry in working.values()))
        doomed = _with_named_parents(previous.fields) - _with_named_parents(owned)
        if doomed:
            merged = _remove_paths(schema, merged, doomed)

    comparison = _compare(schema, live_content, merged, skip_always_present=False)
    changed, removed = comparison.modified | comparison.added, comparison.removed
    if subresource == "status":
        changed, removed = _status_only(changed), _status_only(removed)
    conflicts = {other: entry.fields & changed for other, entry in working.items() if other != key and entry.fields & changed}
    if conflicts and not force:
        unresolved = conflicts
        if manager == KUBECTL_MANAGER and not subresource:
            allowed = _last_applied_allowance(schema, live_content)
            unresolved = {other: paths - allowed for other, paths in conflicts.items() if paths - allowed}
        if unresolved:
            raise _conflict_error(unresolved)
    for other, entry in working.items():
        if other != key:
            entry.fields -= conflicts.get(other, set()) | removed
    working[key].fields = _untracked_removed(config_paths)
    working = {manager_key: entry for manager_key, entry in working.items() if entry.fields}
    if (live is None or not json_equal(merged, live_content)) and key in working:
        working[key].time = now
    _cap_update_managers(working)

    if manager == KUBECTL_MANAGER and not subresource and live is not None and _annotations(live_content).get(LAST_APPLIED_ANNOTATION):
        _sync_last_applied(merged, applied)
    encoded = _encode_managers(working)
    if live is not None and json_equal(merged, live_content) and json_equal(_without_times(encoded), _without_times(_managed_fields_of(live) or [])):
        return live
    _set_managed_fields(merged, encoded)
    return merged


def owned_fields(obj: dict[str, Any], manager: str, operation: str = APPLY, subresource: str = "") -> set[Path]:
    """The paths one manager owns in ``obj`` (all its versions for an updater), for callers and tests that inspect ownership."""
    owned: set[Path] = set()
    for key, entry in _decode_managers(obj).items():
        if key.manager == manager and key.operation == operation and key.subresource == subresource:
            owned |= entry.fields
    return owned
