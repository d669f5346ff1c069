"""The three PATCH flavours of the local API server as pure functions, with the list schema server-side apply shares.

``merge_patch`` is JSON merge patch (RFC 7386, as evanphx/json-patch applies it), ``json_patch`` is JSON patch
(RFC 6902, with evanphx/json-patch v4's leniencies) and ``strategic_merge_patch`` is Kubernetes' strategic merge
patch for the built-in kinds the server stores. ``LIST_FIELDS`` records, per kind and per path from the object root,
how each list merges: the patch merge key and strategy strategic merge patch reads from the Go struct tags, and the
list type and keys server-side apply reads from the OpenAPI extensions. Errors carry the status codes and messages
the real kube-apiserver answers with.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, bad_request

FieldPath = tuple[str, ...]

DIRECTIVE_MARKER = "$patch"
RETAIN_KEYS_DIRECTIVE = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST_PREFIX = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER_PREFIX = "$setElementOrder"

MAX_JSON_PATCH_OPERATIONS = 10000
UNPROCESSABLE_MESSAGE = "the server rejected our request due to an error in our request"


@dataclass(frozen=True)
class ListField:
    """How one list field merges.

    ``merge_key``/``strategic_merge`` come from the ``patchMergeKey``/``patchStrategy`` struct tags (a merge list
    without a key is a list of primitives merged as a set). ``apply_type`` is the server-side apply list type:
    ``"map"`` lists are keyed by ``apply_keys`` (missing key fields take ``key_defaults``), ``"set"`` lists hold
    unique primitives, ``"atomic"`` lists are replaced whole.
    """

    merge_key: str | None = None
    strategic_merge: bool = False
    apply_type: str = "atomic"
    apply_keys: tuple[str, ...] = ()
    key_defaults: dict[str, Any] = field(default_factory=dict)


def _keyed(merge_key: str, *apply_keys: str, **key_defaults: Any) -> ListField:
    return ListField(merge_key, True, "map", apply_keys or (merge_key,), key_defaults)


def _merged_but_atomic(merge_key: str) -> ListField:
    """Strategic merge patch merges these by key, while server-side apply declares them atomic."""
    return ListField(merge_key, True, "atomic")


PRIMITIVE_SET = ListField(None, True, "set")

COMMON_LIST_FIELDS: dict[FieldPath, ListField] = {
    ("metadata", "finalizers"): PRIMITIVE_SET,
    ("metadata", "ownerReferences"): _keyed("uid"),
}

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")

_CONTAINER_FIELDS: dict[FieldPath, ListField] = {
    ("ports",): _keyed("containerPort", "containerPort", "protocol", protocol="TCP"),
    ("env",): _keyed("name"),
    ("volumeMounts",): _keyed("mountPath"),
    ("volumeDevices",): _keyed("devicePath"),
    ("resources", "claims"): ListField(None, False, "map", ("name",)),
}

_POD_SPEC_FIELDS: dict[FieldPath, ListField] = {
    ("volumes",): _keyed("name"),
    ("imagePullSecrets",): _keyed("name"),
    ("hostAliases",): _keyed("ip"),
    ("topologySpreadConstraints",): _keyed("topologyKey", "topologyKey", "whenUnsatisfiable"),
    ("resourceClaims",): _keyed("name"),
    ("schedulingGates",): _keyed("name"),
    **{(container_list,): _keyed("name") for container_list in CONTAINER_LISTS},
    **{(container_list, *path): spec for container_list in CONTAINER_LISTS for path, spec in _CONTAINER_FIELDS.items()},
}

_POD_STATUS_FIELDS: dict[FieldPath, ListField] = {
    ("status", "conditions"): _keyed("type"),
    ("status", "podIPs"): _keyed("ip"),
    ("status", "hostIPs"): _merged_but_atomic("ip"),
}

# Where each kind keeps its pod spec, from the object root.
POD_SPEC_PATHS: dict[str, FieldPath] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

_STATUS_CONDITIONS = {("status", "conditions"): _keyed("type")}

_KIND_FIELDS: dict[str, dict[FieldPath, ListField]] = {
    "Pod": _POD_STATUS_FIELDS,
    "Deployment": _STATUS_CONDITIONS,
    "StatefulSet": _STATUS_CONDITIONS,
    "DaemonSet": _STATUS_CONDITIONS,
    "ReplicaSet": _STATUS_CONDITIONS,
    "Job": {("status", "conditions"): _merged_but_atomic("type")},
    "Service": {("spec", "ports"): _keyed("port", "port", "protocol", protocol="TCP"), **_STATUS_CONDITIONS},
    "Namespace": _STATUS_CONDITIONS,
    "PersistentVolumeClaim": _STATUS_CONDITIONS,
    "PodDisruptionBudget": _STATUS_CONDITIONS,
    "ServiceAccount": {("secrets",): _keyed("name")},
}


def _build_list_fields() -> dict[str, dict[FieldPath, ListField]]:
    kinds = set(_KIND_FIELDS) | set(POD_SPEC_PATHS) | {"ConfigMap", "Secret", "NetworkPolicy", "Role", "RoleBinding", "Lease", "CronJob"}
    tables: dict[str, dict[FieldPath, ListField]] = {}
    for kind in sorted(kinds):
        table = dict(COMMON_LIST_FIELDS)
        prefix = POD_SPEC_PATHS.get(kind)
        if prefix is not None:
            table.update({prefix + path: spec for path, spec in _POD_SPEC_FIELDS.items()})
        table.update(_KIND_FIELDS.get(kind, {}))
        tables[kind] = table
    return tables


# Lists not named here are atomic for server-side apply and replaced by strategic merge patch (tolerations, args, ...).
LIST_FIELDS: dict[str, dict[FieldPath, ListField]] = _build_list_fields()


def list_field(kind: str, path: FieldPath) -> ListField | None:
    """The merge rules of the list at ``path`` (field names from the object root, list items skipped), if it has any."""
    return LIST_FIELDS.get(kind, COMMON_LIST_FIELDS).get(tuple(path))


# --- shared JSON helpers -----------------------------------------------------------------------------------------


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers compare by value, but booleans never equal numbers (unlike Python's ``True == 1``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(value, right[key]) for key, value in left.items())
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    return type(left) is type(right) and left == right


def _json_kind(value: Any) -> str:
    """The JSON type of a decoded value, the way Go's reflect.TypeOf tells map, slice, string, float64 and bool apart."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def go_format(value: Any) -> str:
    """Go's ``%v`` rendering of a decoded JSON value, for error messages that quote documents as upstream does."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{go_format(value[key])}" for key in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(item) for item in value) + "]"
    return str(value)


def _unknown_failure(message: str) -> ApiError:
    """A plain Go error the apiserver did not map to a status: it answers 500 with an empty (Unknown) reason."""
    return ApiError(500, "", message)


# --- JSON merge patch --------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386): ``null`` deletes, objects merge recursively, anything else replaces.

    Like evanphx/json-patch, nulls are also pruned inside the objects a patch inserts, and a patch that is not an
    object or array (``null``, a string, a number) is rejected with 400 "Invalid JSON Patch".
    """
    if patch is None or not isinstance(patch, (dict, list)):
        raise bad_request("Invalid JSON Patch")
    if isinstance(patch, list):
        return _prune_nulls(copy.deepcopy(patch))
    if not isinstance(target, dict):
        return _prune_nulls(copy.deepcopy(patch))
    return _merge_documents(copy.deepcopy(target), patch)


def _merge_documents(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            document.pop(key, None)
            continue
        current = document.get(key)
        if current is None:
            document[key] = _prune_nulls(copy.deepcopy(value))
        elif not isinstance(current, dict):
            document[key] = _prune_nulls(copy.deepcopy(value))
        elif not isinstance(value, dict):
            # evanphx keeps a non-object patch value verbatim when it replaces an object.
            document[key] = copy.deepcopy(value)
        else:
            document[key] = _merge_documents(current, value)
    return document


def _prune_nulls(value: Any) -> Any:
    """Drop null members of objects at any depth; null array elements stay, as evanphx/json-patch leaves them."""
    if isinstance(value, dict):
        return {key: _prune_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_prune_nulls(item) for item in value]
    return value


# --- JSON patch --------------------------------------------------------------------------------------------------


class JsonPatchFailure(Exception):
    """Why one JSON patch operation could not be applied (evanphx/json-patch's wording); the server reports it as 422."""


def json_patch(target: Any, operations: Any) -> Any:
    """Apply a JSON patch (RFC 6902) to a copy of ``target``.

    A body that is not a list of objects is a 400, more than 10000 operations a 413, and any operation that cannot be
    applied (failed ``test``, missing path, bad index, unknown op) a 422 Invalid with the apiserver's generic message;
    the library's own reason is chained as ``__cause__``.
    """
    if operations is None:
        return copy.deepcopy(target)
    if not isinstance(operations, list):
        raise bad_request(f"json: cannot unmarshal {_json_kind(operations)} into Go value of type jsonpatch.Patch")
    for operation in operations:
        if operation is not None and not isinstance(operation, dict):
            raise bad_request(f"json: cannot unmarshal {_json_kind(operation)} into Go value of type jsonpatch.Operation")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            f"Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(operations)}",
        )
    document = copy.deepcopy(target)
    for operation in operations:
        try:
            document = _apply_operation(document, operation or {})
        except JsonPatchFailure as failure:
            raise ApiError(422, "Invalid", UNPROCESSABLE_MESSAGE) from failure
    return document


def _apply_operation(document: Any, operation: dict[str, Any]) -> Any:
    kind = operation.get("op")
    if not isinstance(kind, str):
        kind = "unknown"
    if kind == "add":
        _add(document, _operation_path(operation, "path"), _operation_value(operation))
    elif kind == "remove":
        _remove(document, _operation_path(operation, "path"))
    elif kind == "replace":
        _replace(document, _operation_path(operation, "path"), _operation_value(operation))
    elif kind == "move":
        source = _operation_path(operation, "from")
        value = _get(document, source, "move")
        _remove(document, source)
        _add(document, _operation_path(operation, "path"), value)
    elif kind == "copy":
        value = _get(document, _operation_path(operation, "from"), "copy")
        _add(document, _operation_path(operation, "path"), copy.deepcopy(value))
    elif kind == "test":
        _test(document, _operation_path(operation, "path"), operation)
    else:
        raise JsonPatchFailure(f"Unexpected kind: {kind}")
    return document


def _operation_path(operation: dict[str, Any], name: str) -> str:
    path = operation.get(name)
    if not isinstance(path, str):
        raise JsonPatchFailure(f"operation missing {name} field")
    return path


def _operation_value(operation: dict[str, Any]) -> Any:
    if "value" not in operation:
        raise JsonPatchFailure("operation missing value field")
    return copy.deepcopy(operation["value"])


def _pointer_tokens(path: str) -> list[str]:
    if not path.startswith("/"):
        raise JsonPatchFailure(f'doc is missing path: "{path}"')
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _array_index(token: str, length: int, allow_end: bool) -> int:
    """An array index token; like evanphx v4, negative indices count from the end."""
    if not re.fullmatch(r"[+-]?\d+", token):
        raise JsonPatchFailure(f"Unable to access invalid index: {token}")
    index = int(token)
    limit = length if allow_end else length - 1
    if index < 0:
        if index < -length:
            raise JsonPatchFailure(f"Unable to access invalid index: {index}")
        index += length
    if index > limit:
        raise JsonPatchFailure(f"Unable to access invalid index: {index}")
    return index


def _parent(document: Any, path: str, operation: str) -> tuple[Any, str]:
    tokens = _pointer_tokens(path)
    container = document
    for token in tokens[:-1]:
        if isinstance(container, dict) and token in container:
            container = container[token]
        elif isinstance(container, list) and re.fullmatch(r"[+-]?\d+", token) and -len(container) <= int(token) < len(container):
            container = container[int(token)]
        else:
            raise JsonPatchFailure(f'{operation} operation does not apply: doc is missing path: "{path}"')
    if not isinstance(container, (dict, list)):
        raise JsonPatchFailure(f'{operation} operation does not apply: doc is missing path: "{path}"')
    return container, tokens[-1]


def _add(document: Any, path: str, value: Any) -> None:
    container, key = _parent(document, path, "add")
    if isinstance(container, dict):
        container[key] = value
    elif key == "-":
        container.append(value)
    else:
        container.insert(_array_index(key, len(container), allow_end=True), value)


def _remove(document: Any, path: str) -> None:
    container, key = _parent(document, path, "remove")
    if isinstance(container, dict):
        if key not in container:
            raise JsonPatchFailure(f"Unable to remove nonexistent key: {key}: missing value")
        del container[key]
    else:
        del container[_array_index(key, len(container), allow_end=False)]


def _replace(document: Any, path: str, value: Any) -> None:
    container, key = _parent(document, path, "replace")
    if isinstance(container, dict):
        if key not in container:
            raise JsonPatchFailure(f'replace operation does not apply: doc is missing key: "{path}": missing value')
        container[key] = value
    else:
        container[_array_index(key, len(container), allow_end=False)] = value


def _get(document: Any, path: str, operation: str) -> Any:
    container, key = _parent(document, path, operation)
    if isinstance(container, dict):
        if key not in container:
            raise JsonPatchFailure(f'{operation} operation does not apply: doc is missing from path: "{path}": missing value')
        return container[key]
    return container[_array_index(key, len(container), allow_end=False)]


def _test(document: Any, path: str, operation: dict[str, Any]) -> None:
    container, key = _parent(document, path, "test")
    expected = operation.get("value")
    if isinstance(container, dict):
        if key not in container or container[key] is None:
            # evanphx v4 lets a test for null pass on a missing member.
            if expected is None:
                return
            raise JsonPatchFailure(f"testing value {path} failed: test failed")
        actual = container[key]
    else:
        actual = container[_array_index(key, len(container), allow_end=False)]
    if not json_equal(actual, expected):
        raise JsonPatchFailure(f"testing value {path} failed: test failed")


# --- strategic merge patch ---------------------------------------------------------------------------------------


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch to a copy of ``target`` (a built-in kind, named by its ``kind``).

    Maps merge and ``null`` deletes; lists with a merge strategy merge by their patch merge key (primitive merge lists
    as sets) and other lists are replaced. Directives: ``$patch: replace|delete|merge`` in maps and list items,
    ``$deleteFromPrimitiveList/<field>``, ``$setElementOrder/<field>`` and ``$retainKeys``. New items land in the
    order upstream produces (patch items not in the live list come before the live-only ones unless
    ``$setElementOrder`` says otherwise). Malformed directives are 400s, the rest of the library's errors 500s.
    """
    if not isinstance(patch, dict):
        raise bad_request(f"json: cannot unmarshal {_json_kind(patch)} into Go value of type map[string]interface {{}}")
    merger = _StrategicMerger(str(target.get("kind", "")))
    return merger.merge_map(copy.deepcopy(target), copy.deepcopy(patch), ())


def _discard_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _discard_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_discard_nulls(item) for item in value]
    return value


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """Upstream's cleanup of a value the patch inserts whole: maps carrying ``$patch`` are dropped entirely.

    The other ``$``-prefixed keys are unknown fields a typed decode would drop, so they go too. Returns the cleaned
    value and whether to keep it at all.
    """
    if isinstance(value, dict):
        if DIRECTIVE_MARKER in value:
            return None, False
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            if key.startswith("$"):
                continue
            item, keep = _remove_directives(item)
            if keep:
                cleaned[key] = item
        return cleaned, True
    if isinstance(value, list):
        items = []
        for item in value:
            item, keep = _remove_directives(item)
            if keep:
                items.append(item)
        return items, True
    return value, True


def _strip_unknown(value: Any) -> Any:
    """What a typed decode keeps of a raw patch value upstream stores as is: no nulls, no ``$``-prefixed keys."""
    if isinstance(value, dict):
        return {key: _strip_unknown(item) for key, item in value.items() if item is not None and not key.startswith("$")}
    if isinstance(value, list):
        return [_strip_unknown(item) for item in value]
    return value


def _directive_key(key: str, prefix: str, malformed: str) -> str:
    head, separator, field_name = key.partition("/")
    if head != prefix or not separator:
        raise bad_request(malformed)
    return field_name


def _bad_patch_type(directive: Any, patch: dict[str, Any]) -> ApiError:
    return _unknown_failure(f"unknown patch type: {go_format(directive)} in map: {go_format(patch)}")


def _no_merge_key(item: Any, merge_key: str) -> ApiError:
    return _unknown_failure(f"map: {go_format(item)} does not contain declared merge key: {merge_key}")


def _same_scalar(left: Any, right: Any) -> bool:
    return _json_kind(left) == _json_kind(right) and json_equal(left, right)


class _StrategicMerger:
    """Strategic merge patch for one kind; paths are field names from the object root with list items skipped."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def merge_map(self, original: dict[str, Any] | None, patch: dict[str, Any], path: FieldPath) -> dict[str, Any]:
        if DIRECTIVE_MARKER in patch:
            directive = patch[DIRECTIVE_MARKER]
            if directive == "replace":
                return _strip_unknown({key: value for key, value in patch.items() if key != DIRECTIVE_MARKER})
            if directive == "delete":
                return {}
            raise _bad_patch_type(directive, patch)
        original = {} if original is None else original
        self._retain_keys(original, patch)
        self._set_element_order(original, patch, path)
        deletion_lists = [key for key in patch if key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX)]
        for key in [key for key in patch if key not in deletion_lists] + deletion_lists:
            self._merge_key(original, key, patch[key], path)
        return original

    def _merge_key(self, original: dict[str, Any], key: str, patch_value: Any, path: FieldPath) -> None:
        is_delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
        if is_delete_list:
            key = _directive_key(key, DELETE_FROM_PRIMITIVE_LIST_PREFIX, "invalid patch format of primitive list")
        elif key.startswith("$"):
            return
        if patch_value is None:
            original.pop(key, None)
            return
        if key not in original or _json_kind(original[key]) != _json_kind(patch_value):
            if not is_delete_list:
                value, keep = _remove_directives(_discard_nulls(patch_value))
                if keep:
                    original[key] = value
                else:
                    original.pop(key, None)
            return
        current = original[key]
        if isinstance(current, dict):
            original[key] = self.merge_map(current, patch_value, path + (key,))
        elif isinstance(current, list):
            original[key] = self._merge_list_field(current, patch_value, path + (key,), is_delete_list)
        else:
            original[key] = patch_value

    def _retain_keys(self, original: dict[str, Any], patch: dict[str, Any]) -> None:
        if RETAIN_KEYS_DIRECTIVE not in patch:
            return
        retained = patch.pop(RETAIN_KEYS_DIRECTIVE)
        if not isinstance(retained, list):
            raise bad_request("invalid patch format of retainKeys")
        for key, value in patch.items():
            if value is None or key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX) or key.startswith(SET_ELEMENT_ORDER_PREFIX):
                continue
            if key not in retained:
                raise bad_request("invalid patch format of retainKeys")
        for key in [key for key in original if key not in retained]:
            del original[key]

    def _merge_list_field(self, original: list[Any], patch: list[Any], path: FieldPath, is_delete_list: bool) -> list[Any]:
        spec = list_field(self.kind, path)
        if (spec is not None and spec.strategic_merge) or is_delete_list:
            return self._merge_slice(original, patch, spec.merge_key if spec else None, path, is_delete_list)
        return _strip_unknown(patch)

    def _element_kind(self, *lists: list[Any]) -> str:
        kinds = {_json_kind(item) for items in lists for item in items}
        if not kinds:
            raise _unknown_failure("no elements in any of the given slices")
        if "array" in kinds:
            # Lists of lists are ErrNoListOfLists, which the apiserver maps to 422.
            raise ApiError(422, "Invalid", UNPROCESSABLE_MESSAGE)
        if len(kinds) > 1:
            raise _unknown_failure(f"list element types are not identical: {go_format(list(lists))}")
        return kinds.pop()

    def _merge_slice(self, original: list[Any], patch: list[Any], merge_key: str | None, path: FieldPath, is_delete_list: bool) -> list[Any]:
        if not original and not patch:
            return original
        is_map = self._element_kind(original, patch) == "object"
        if not is_map:
            if is_delete_list:
                return [item for item in original if not any(_same_scalar(item, doomed) for doomed in patch)]
            merged: list[Any] = []
            for item in original + patch:
                if not any(_same_scalar(item, kept) for kept in merged):
                    merged.append(item)
            order_key = None
        else:
            if not merge_key:
                raise _unknown_failure(f"cannot merge lists without merge key for {'.'.join(path)}")
            original, patch = self._special_elements(original, patch, merge_key)
            merged = self._merge_without_special_elements(original, patch, merge_key, path)
            order_key = merge_key
        patch_items, server_only = _partition(merged, patch, order_key)
        return _normalize_element_order(patch_items, server_only, patch, original, order_key)

    def _special_elements(self, original: list[Any], patch: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
        plain: list[Any] = []
        replace = False
        for item in patch:
            if DIRECTIVE_MARKER not in item:
                plain.append(item)
                continue
            directive = item[DIRECTIVE_MARKER]
            if directive == "delete":
                if merge_key not in item:
                    raise _no_merge_key(item, merge_key)
                original = [kept for kept in original if not (merge_key in kept and _same_scalar(kept[merge_key], item[merge_key]))]
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                raise _unknown_failure("merging lists cannot yet be specified in the patch")
            else:
                raise _bad_patch_type(directive, item)
        if replace:
            return [_strip_unknown(item) for item in plain], []
        return original, plain

    def _merge_without_special_elements(self, original: list[Any], patch: list[Any], merge_key: str, path: FieldPath) -> list[Any]:
        merged = list(original)
        for item in patch:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            position = _find_by_key(merged, merge_key, item[merge_key])
            if position is None:
                merged.append(_strip_unknown(item))
            else:
                merged[position] = self.merge_map(merged[position], item, path)
        return merged

    def _set_element_order(self, original: dict[str, Any], patch: dict[str, Any], path: FieldPath) -> None:
        for directive_key in [key for key in patch if key.startswith(SET_ELEMENT_ORDER_PREFIX)]:
            order = patch.pop(directive_key)
            if not isinstance(order, list):
                raise _unknown_failure(f"expected a []interface {{}}, but received a {_go_type(order)}")
            key = _directive_key(directive_key, SET_ELEMENT_ORDER_PREFIX, "invalid patch format of setElementOrder list")
            found_original, found_patch = key in original, key in patch
            original_list, patch_list = original.get(key), patch.get(key)
            if found_original and not isinstance(original_list, list):
                raise _unknown_failure(f"expected a []interface {{}}, but received a {_go_type(original_list)}")
            if found_patch and not isinstance(patch_list, list):
                raise _unknown_failure(f"expected a []interface {{}}, but received a {_go_type(patch_list)}")
            spec = list_field(self.kind, path + (key,))
            merge_key = spec.merge_key if spec else None
            _validate_set_element_order(patch_list or [], order, merge_key)
            if found_original and not found_patch:
                merged = original_list
            elif found_patch and not found_original:
                merged, _directives = _remove_directives(patch_list)
            elif found_patch and found_original:
                merged = self._merge_list_field(original_list, patch_list, path + (key,), False)
            else:
                continue
            patch_items, server_only = _partition(merged, order, merge_key)
            self._element_kind(original_list or [], patch_list or [])
            original[key] = _normalize_element_order(patch_items, server_only, order, original_list or [], merge_key)
            patch.pop(key, None)


def _go_type(value: Any) -> str:
    return {"object": "map[string]interface {}", "array": "[]interface {}", "number": "float64"}.get(_json_kind(value), _json_kind(value))


def _find_by_key(items: list[Any], merge_key: str, value: Any) -> int | None:
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise _unknown_failure(f"value for key {position} is not a map")
        if merge_key in item and _same_scalar(item[merge_key], value):
            return position
    return None


def _order_index(order: list[Any], item: Any, merge_key: str | None) -> int:
    """Position of ``item`` in ``order`` (by merge key value for maps), or -1."""
    for position, candidate in enumerate(order):
        if merge_key is None:
            if _same_scalar(candidate, item):
                return position
        elif isinstance(candidate, dict) and isinstance(item, dict) and _same_scalar(candidate.get(merge_key), item.get(merge_key)):
            return position
    return -1


def _partition(merged: list[Any], present_in: list[Any], merge_key: str | None) -> tuple[list[Any], list[Any]]:
    """Split merged items into those the patch (or order list) names and those only the live list had."""
    named: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        if merge_key is not None and (not isinstance(item, dict) or merge_key not in item):
            raise _no_merge_key(item, merge_key)
        (named if _order_index(present_in, item, merge_key) >= 0 else server_only).append(item)
    return named, server_only


def _validate_set_element_order(patch_list: list[Any], order: list[Any], merge_key: str | None) -> None:
    """The patch items (deletions aside) must appear in ``$setElementOrder`` in the same relative order."""
    if not order or not patch_list:
        return
    if merge_key:
        items = [item for item in patch_list if not (isinstance(item, dict) and item.get(DIRECTIVE_MARKER) == "delete")]
    else:
        items = patch_list
    patch_index = order_index = 0
    while patch_index < len(items) and order_index < len(order):
        item = items[patch_index]
        if isinstance(item, dict) and DIRECTIVE_MARKER in item:
            patch_index += 1
            continue
        if merge_key:
            for candidate in (item, order[order_index]):
                if not isinstance(candidate, dict) or merge_key not in candidate:
                    raise _no_merge_key(candidate, merge_key)
            equal = _same_scalar(item[merge_key], order[order_index][merge_key])
        else:
            equal = _same_scalar(item, order[order_index])
        if equal:
            patch_index += 1
        order_index += 1
    if patch_index < len(items):
        raise _unknown_failure(f"the order in patch list:\n{go_format(patch_list)}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{go_format(order)}")


def _normalize_element_order(
    patch_items: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any], merge_key: str | None
) -> list[Any]:
    """Upstream's list order: patch items in patch order, live-only items in live order, interleaved by live position.

    A live-only item goes before a patch item only when both are in the live list and it came first there, so
    items new to the list end up ahead of the live-only items that follow them.
    """
    patch_items = sorted(patch_items, key=lambda item: _order_index(patch_order, item, merge_key))
    server_only = sorted(server_only, key=lambda item: _order_index(server_order, item, merge_key))
    result: list[Any] = []
    left = right = 0
    while left < len(server_only) or right < len(patch_items):
        if left >= len(server_only):
            result.append(patch_items[right])
            right += 1
        elif right >= len(patch_items):
            result.append(server_only[left])
            left += 1
        else:
            left_position = _order_index(server_order, server_only[left], merge_key)
            right_position = _order_index(server_order, patch_items[right], merge_key)
            if left_position >= 0 and right_position >= 0 and left_position < right_position:
                result.append(server_only[left])
                left += 1
            else:
                result.append(patch_items[right])
                right += 1
    return result
