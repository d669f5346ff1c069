# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whose namespace it is, as filters (documented in pg_namespace_deploy_plan.yml and
pg_namespace_teardown_plan.yml). Thin wrappers over module_utils/_namespace_ownership.py."""

from __future__ import annotations

from typing import Any, Callable, Dict

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _namespace_ownership


def _namespace(value: Any, filter_name: str) -> Any:
    """The Namespace object, or None when it does not exist (None, an empty mapping or an empty list, as k8s_info returns it)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is not None and not isinstance(value, dict):
        raise AnsibleFilterError(f"{filter_name}: the input must be a Namespace object, a list of one, or nothing")
    return value or None


def _cluster(value: Any, filter_name: str) -> str:
    if not isinstance(value, str) or not value:
        raise AnsibleFilterError(f"{filter_name}: the cluster name must be a non-empty string")
    return value


def pg_namespace_deploy_plan(namespace: Any, cluster: Any, manage: Any = False) -> Dict[str, Any]:
    try:
        managed = boolean(manage, strict=True)
    except TypeError as error:
        raise AnsibleFilterError(f"pg_namespace_deploy_plan: manage must be a boolean, got {manage!r}") from error
    return _namespace_ownership.deploy_plan(_namespace(namespace, "pg_namespace_deploy_plan"), _cluster(cluster, "pg_namespace_deploy_plan"), managed)


def pg_namespace_teardown_plan(namespace: Any, cluster: Any, objects: Any = None) -> Dict[str, Any]:
    if objects is None:
        objects = []
    if not isinstance(objects, list) or not all(isinstance(obj, dict) for obj in objects):
        raise AnsibleFilterError("pg_namespace_teardown_plan: objects must be a list of objects (kind and metadata)")
    return _namespace_ownership.teardown_plan(_namespace(namespace, "pg_namespace_teardown_plan"), _cluster(cluster, "pg_namespace_teardown_plan"), objects)


class FilterModule:
    """dbonk8s.postgresql filters for the ownership of the namespace."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "pg_namespace_deploy_plan": pg_namespace_deploy_plan,
            "pg_namespace_teardown_plan": pg_namespace_teardown_plan,
        }
