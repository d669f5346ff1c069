# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pg_cluster role's preflight: every rule its variables must follow, as one pure function.

This module util is PRIVATE to the collection: it can change without notice.

The role's argument specs check types and choices; these rules check what they cannot say: the
formats of values that reach the manifests, postgresql.conf and the pod scripts as they are, and
the rules that span several variables. Each problem is one sentence that names the variable and
what is allowed; the role stops on them before any task writes a file or calls the API.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _inputs

#: Settings the collection writes itself and that the pod scripts and the procedures rely on:
#: overriding one would break replication, fencing or the archive rather than tune them.
MANAGED_SETTINGS = frozenset(
    {
        "archive_command",
        "archive_mode",
        "config_file",
        "data_directory",
        "hba_file",
        "hot_standby",
        "ident_file",
        "include",
        "include_dir",
        "include_if_exists",
        "listen_addresses",
        "port",
        "primary_conninfo",
        "primary_slot_name",
        "recovery_target_timeline",
        "restore_command",
        "synchronous_standby_names",
        "unix_socket_directories",
        "wal_level",
        "wal_log_hints",
    }
)

RESOURCE_SECTIONS = ("requests", "limits")


def as_list(value: Any) -> Any:
    """A list variable as the argument spec takes it: a list, or one string of comma-separated items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _checks(max_members: int, known_timezone: Optional[Callable[[str], bool]]) -> dict[str, _inputs.Check]:
    return {
        "pg_cluster_members": _inputs.integer(1, max_members),
        # The StatefulSet controller adds a 10-character hash to pod labels: 52 leaves room for it.
        "pg_cluster_name": _inputs.dns_1035_label(52),
        "pg_cluster_namespace": _inputs.dns_label(63),
        "pg_cluster_kind_name": _inputs.dns_label(50),
        "pg_cluster_kind_workers": _inputs.integer(0),
        "pg_cluster_kubernetes_version": _inputs.kubernetes_version,
        "pg_cluster_image": _inputs.image_reference,
        "pg_cluster_kind_node_image": _inputs.image_reference,
        "pg_cluster_storage_class": _optional_subdomain,
        "pg_cluster_archive_storage_class": _optional_subdomain,
        "pg_cluster_storage_size": _positive_quantity,
        "pg_cluster_archive_size": _positive_quantity,
        "pg_cluster_timezone": lambda value: _inputs.timezone(value, known_timezone),
        "pg_cluster_password_length": _inputs.integer(16, 1024),
        "pg_cluster_superuser": _inputs.role_name,
        "pg_cluster_replication_user": _inputs.role_name,
        "pg_cluster_wait_timeout": _inputs.integer(1),
        "pg_cluster_container_engine_timeout": _inputs.integer(1),
        "pg_cluster_manifest_dir": _inputs.path,
        "pg_cluster_bin_dir": _inputs.path,
        "pg_cluster_kind_state_dir": _inputs.path,
        "pg_cluster_kind_archive_host_path": _inputs.path,
        "pg_cluster_kubeconfig": _inputs.path,
        "pg_cluster_archive_node_path": _inputs.absolute_path,
    }


def _optional_subdomain(value: Any) -> Optional[str]:
    """Empty (the cluster's default storage class), or a storage class name."""
    return None if value == "" else _inputs.dns_subdomain(value)


def _positive_quantity(value: Any) -> Optional[str]:
    try:
        return None if _inputs.parse_quantity(value) > 0 else "must be more than zero"
    except ValueError:
        return "is not a Kubernetes quantity such as 10Gi"


def _not_given_as_mapping(name: str, what: str, json_example: str) -> str:
    """A mapping variable given as something else (often a string, from -e name=value): how to give it."""
    return f"{name} must be {what}; on the command line give it as JSON: -e '{{\"{name}\": {json_example}}}'."


def _resources_problems(resources: Any) -> Iterable[str]:
    name = "pg_cluster_resources"
    if not isinstance(resources, dict):
        yield _not_given_as_mapping(name, "a mapping with requests and limits, such as {requests: {cpu: 500m, memory: 1Gi}}", "{...}")
        return
    unknown = sorted(str(key) for key in resources if key not in RESOURCE_SECTIONS)
    if unknown:
        yield f"{name} has {', '.join(unknown)}: only requests and limits are resource sections."
    parsed: dict[str, dict[str, Any]] = {}
    for section in RESOURCE_SECTIONS:
        values = resources.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            yield f"{name}.{section} must be a mapping of resource names to quantities, such as {{cpu: 500m, memory: 1Gi}}."
            continue
        parsed[section] = {}
        for resource, value in values.items():
            problem = _inputs.first_problem(f"{name}.{section}.{resource}", value, _inputs.quantity)
            if problem:
                yield problem
            else:
                parsed[section][resource] = _inputs.parse_quantity(value)
    for resource, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(resource)
        if limit is not None and request > limit:
            yield (
                f"{name}.requests.{resource}={resources['requests'][resource]} is more than {name}.limits.{resource}="
                f"{resources['limits'][resource]}: Kubernetes refuses a request above its limit."
            )


def _parameters_problems(parameters: Any) -> Iterable[str]:
    name = "pg_cluster_postgresql_parameters"
    if not isinstance(parameters, dict):
        yield _not_given_as_mapping(name, "a mapping of setting names to values, such as {work_mem: 64MB}", '{"work_mem": "64MB"}')
        return
    for setting, value in parameters.items():
        problem = _inputs.first_problem(f"{name} key {setting!r}", setting, _inputs.setting_name)
        if problem:
            yield problem
            continue
        lowered = str(setting).lower()
        if lowered in MANAGED_SETTINGS or lowered.startswith("dbonk8s."):
            yield f"{name}.{setting} is set by the collection (replication, fencing and the archive depend on it): use the role's own variables instead."
            continue
        problem = _inputs.first_problem(f"{name}.{setting}", value, _inputs.setting_value)
        if problem:
            yield problem


def _list_problems(name: str, value: Any, check: _inputs.Check, example: str) -> Iterable[str]:
    items = as_list(value)
    if not isinstance(items, list):
        yield f"{name} must be a list, such as {example}."
        return
    for item in items:
        problem = _inputs.first_problem(f"{name} item", item, check)
        if problem:
            yield problem


def role_input_errors(values: dict[str, Any], max_members: int, known_timezone: Optional[Callable[[str], bool]] = None) -> list[str]:
    """Every problem with the role's variables ``values`` (name -> value), one sentence each."""
    problems: list[str] = []
    for name, check in _checks(max_members, known_timezone).items():
        if name in values:
            problem = _inputs.first_problem(name, values[name], check)
            if problem:
                problems.append(problem)
    if "pg_cluster_resources" in values:
        problems.extend(_resources_problems(values["pg_cluster_resources"]))
    if "pg_cluster_postgresql_parameters" in values:
        problems.extend(_parameters_problems(values["pg_cluster_postgresql_parameters"]))
    if "pg_cluster_client_cidrs" in values:
        problems.extend(_list_problems("pg_cluster_client_cidrs", values["pg_cluster_client_cidrs"], _inputs.cidr, "[192.0.2.0/24]"))
    for name in ("pg_cluster_client_namespace_labels", "pg_cluster_client_pod_labels"):
        if name in values:
            value = values[name]
            if isinstance(value, list):
                problems.extend(_list_problems(name, value, _inputs.label_set, "[{team: app}]"))
            else:
                problems.append(f"{name} must be a list of label mappings, such as [{{team: app}}]; on the command line give it as JSON.")
    problems.extend(_cross_problems(values))
    return problems


def _cross_problems(values: dict[str, Any]) -> Iterable[str]:
    """Rules that span several variables; each only when the variables it reads are valid."""
    members = _inputs.as_integer(values.get("pg_cluster_members"))
    sync_count = _inputs.as_integer(values.get("pg_cluster_sync_count"))
    if values.get("pg_cluster_sync_mode") != "off" and members is not None and members > 1:
        if sync_count is None or not 1 <= sync_count <= members - 1:
            yield (
                f"pg_cluster_sync_count={values.get('pg_cluster_sync_count')} must be between 1 and the number of standbys "
                f"({members - 1} with pg_cluster_members={members}), or set pg_cluster_sync_mode=off."
            )
    workers = _inputs.as_integer(values.get("pg_cluster_kind_workers"))
    if values.get("pg_cluster_spread") == "required" and values.get("pg_cluster_target") == "kind" and None not in (workers, members) and workers < members:
        yield (f"pg_cluster_spread=required needs one kind worker per member: pg_cluster_kind_workers={workers} " f"is less than pg_cluster_members={members}.")
    if values.get("pg_cluster_archive_mode") == "host_path" and values.get("pg_cluster_target") not in (None, "kind"):
        yield (
            "pg_cluster_archive_mode=host_path only works on kind (every node mounts the same host directory); "
            "with pg_cluster_target=existing use pvc (a ReadWriteMany storage class) or none."
        )
    if "pg_cluster_namespace_create" in values and not _truthy(values["pg_cluster_namespace_create"]):
        if values.get("pg_cluster_target") == "kind":
            yield (
                "pg_cluster_namespace_create=false needs a namespace that exists, which a kind cluster the role creates "
                "has not: use it with pg_cluster_target=existing."
            )
        if _truthy(values.get("pg_cluster_namespace_manage")):
            yield (
                "pg_cluster_namespace_manage=true labels the Namespace, which is cluster-scoped: it cannot be combined "
                "with pg_cluster_namespace_create=false, which touches nothing cluster-scoped."
            )
    superuser, replication_user = values.get("pg_cluster_superuser"), values.get("pg_cluster_replication_user")
    if superuser is not None and superuser == replication_user:
        yield "pg_cluster_replication_user must differ from pg_cluster_superuser (a dedicated replication role)."
    if _truthy(values.get("pg_cluster_delete_kind_cluster")) and not _truthy(values.get("pg_cluster_delete_volumes")):
        yield ("pg_cluster_delete_kind_cluster=true deletes the data volumes too: set pg_cluster_delete_volumes=true " "as well to confirm.")


def _truthy(value: Any) -> bool:
    """A bool variable as the argument spec reads it (true, "yes", 1...); anything else is false."""
    try:
        return boolean(value, strict=True)
    except TypeError:
        return False


# Fields of a StatefulSet's spec that the API refuses to change (all but replicas, ordinals,
# template, updateStrategy, minReadySeconds and the claim retention policy), with the variable that sets each.
_FIXED_STATEFULSET_FIELDS = (("serviceName", "pg_cluster_name"), ("podManagementPolicy", None))
_CLAIM_FIELDS = (("storageClassName", "pg_cluster_storage_class"), ("accessModes", None))


def statefulset_change_errors(live: Any, rendered: Any) -> list[str]:
    """What in ``rendered`` the API would refuse as an update of the ``live`` StatefulSet, one sentence each.

    Nothing when there is no live StatefulSet yet. Quantities compare by value (10Gi equals 10240Mi).
    """
    if not isinstance(live, dict) or not live.get("spec") or not isinstance(rendered, dict):
        return []
    where = f"StatefulSet {live.get('metadata', {}).get('namespace', '')}/{live.get('metadata', {}).get('name', '')}"
    problems = []
    live_spec, new_spec = live["spec"], rendered.get("spec") or {}
    for field, variable in _FIXED_STATEFULSET_FIELDS:
        if live_spec.get(field) != new_spec.get(field):
            problems.append(
                f"{variable or field} would change {field} of {where} from {live_spec.get(field)!r} to {new_spec.get(field)!r}, "
                "which Kubernetes does not allow."
            )
    live_claims = {claim.get("metadata", {}).get("name"): claim.get("spec") or {} for claim in live_spec.get("volumeClaimTemplates") or []}
    for claim in new_spec.get("volumeClaimTemplates") or []:
        name = claim.get("metadata", {}).get("name")
        old, new = live_claims.get(name), claim.get("spec") or {}
        if old is None:
            problems.append(
                f"{where} has no volume claim template {name}: its claim templates cannot be changed; "
                "delete the StatefulSet (keeping the volumes) to change them."
            )
            continue
        for field, variable in _CLAIM_FIELDS:
            if (old.get(field) or None) != (new.get(field) or None):
                problems.append(
                    f"{variable or field}={new.get(field) or ''!r} differs from {old.get(field) or ''!r}, the {field} of volume {name} of {where}: "
                    f"Kubernetes does not allow changing it; keep {old.get(field) or ''!r}."
                )
        old_size = ((old.get("resources") or {}).get("requests") or {}).get("storage")
        new_size = ((new.get("resources") or {}).get("requests") or {}).get("storage")
        if not _same_quantity(old_size, new_size):
            variable = "pg_cluster_storage_size" if name == "pgdata" else "the size"
            problems.append(
                f"{variable}={new_size} differs from {old_size}, the size of volume {name} of {where}: Kubernetes does not allow changing "
                f"a StatefulSet's claim templates and this collection does not expand volumes yet; keep {old_size}."
            )
    return problems


def _same_quantity(first: Any, second: Any) -> bool:
    try:
        return _inputs.parse_quantity(first) == _inputs.parse_quantity(second)
    except ValueError:
        return first == second
