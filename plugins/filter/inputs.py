# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pg_cluster role's preflight as a filter (documented in pg_cluster_input_errors.yml).

A thin wrapper over module_utils/_role_inputs.py; the time zone database is this controller's.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _inputs, _role_inputs


def _known_timezone() -> Optional[Callable[[str], bool]]:
    """Whether a name is in this machine's time zone database; None when it has none to ask."""
    try:
        import zoneinfo  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    if not zoneinfo.available_timezones():
        return None

    def known(name: str) -> bool:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            return False
        return True

    return known


def pg_cluster_input_errors(values: Any, max_members: Any) -> List[str]:
    if not isinstance(values, dict):
        raise AnsibleFilterError("pg_cluster_input_errors: the input must be a mapping of variable names to values")
    limit = _inputs.as_integer(max_members)
    if limit is None or limit < 1:
        raise AnsibleFilterError(f"pg_cluster_input_errors: max_members must be a positive whole number, got {max_members!r}")
    return _role_inputs.role_input_errors(dict(values), limit, _known_timezone())


def pg_statefulset_change_errors(rendered: Any, live: Any) -> List[str]:
    return _role_inputs.statefulset_change_errors(live, rendered)


def pg_as_list(value: Any) -> Any:
    return _role_inputs.as_list(value)


class FilterModule:
    """dbonk8s.postgresql filters for the role's inputs."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "pg_cluster_input_errors": pg_cluster_input_errors,
            "pg_statefulset_change_errors": pg_statefulset_change_errors,
            "pg_as_list": pg_as_list,
        }
