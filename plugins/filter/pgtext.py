# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for WAL positions, sizes and member names; each documented in its <name>.yml sidecar.

They are thin wrappers over module_utils/_pgtext.py, which the modules use too, so a playbook and a
module never disagree on what an LSN or a member list means.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from ansible.errors import AnsibleFilterError

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _pgtext


def _wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise AnsibleFilterError(f"{name}: {exc}") from exc

    run.__name__ = name
    run.__doc__ = func.__doc__
    return run


def pg_lsn_to_int(lsn: str) -> int:
    return _pgtext.lsn_to_int(lsn)


def pg_lsn_from_int(position: int) -> str:
    return _pgtext.lsn_from_int(position)


def pg_lsn_diff(lsn_a: str, lsn_b: str) -> int:
    return _pgtext.lsn_diff(lsn_a, lsn_b)


def pg_human_bytes(size: int) -> str:
    return _pgtext.human_bytes(size)


def pg_pod_ordinal(pod_name: str) -> int:
    return _pgtext.pod_ordinal(pod_name)


def pg_member_names(name: str, count: int) -> List[str]:
    return _pgtext.member_names(name, count)


def pg_sync_standby_names(members: List[str], mode: str = "any", count: int = 1) -> str:
    return _pgtext.sync_standby_names(members, mode, count)


class FilterModule:
    """dbonk8s.postgresql filters."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            func.__name__: _wrap(func.__name__, func)
            for func in (
                pg_lsn_to_int,
                pg_lsn_from_int,
                pg_lsn_diff,
                pg_human_bytes,
                pg_pod_ordinal,
                pg_member_names,
                pg_sync_standby_names,
            )
        }
