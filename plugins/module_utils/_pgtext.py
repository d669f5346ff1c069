# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure text and number transformations shared by the filter plugins and the modules.

Every function validates its input and raises ``ValueError`` (or ``TypeError`` for a value of the
wrong kind) with a sentence that names the bad value, so that a filter can turn it into an
``AnsibleFilterError`` and a module into ``fail_json`` without rewording.

Values coming from Jinja are often strings (``-e pg_cluster_members=5``), so integer arguments also
accept decimal strings; booleans are refused everywhere because ``True`` is an ``int`` in Python and
an unquoted ``off`` is ``False`` in YAML.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Mapping

__all__ = [
    "LSN_MAX",
    "human_bytes",
    "lsn_diff",
    "lsn_from_int",
    "lsn_to_int",
    "member_names",
    "parse_sync_standby_names",
    "pod_ordinal",
    "sync_standby_names",
]

# pg_lsn is a 64-bit position, written by PostgreSQL as two 32-bit halves in hexadecimal.
LSN_MAX = (1 << 64) - 1
_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
# A StatefulSet pod is "<statefulset>-<ordinal>"; ordinals are printed without leading zeros.
_POD_RE = re.compile(r"^([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)-(0|[1-9][0-9]*)$")
# The pod name is also its hostname, so the StatefulSet name must keep it a DNS-1123 label.
_DNS_LABEL_RE = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL_MAX = 63
_SYNC_MODES = ("any", "first", "off")
_IEC_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _as_int(value: Any, what: str) -> int:
    """Return value as an int, accepting decimal strings and integral floats, refusing booleans."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got the boolean {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
        return int(value)
    raise TypeError(f"{what} must be an integer, got {value!r}")


def lsn_to_int(lsn: Any) -> int:
    """Return the byte position of a PostgreSQL LSN such as ``16/B374D848``."""
    if not isinstance(lsn, str):
        raise TypeError(f"an LSN must be a string such as '16/B374D848', got {lsn!r}")
    match = _LSN_RE.match(lsn.strip())
    if match is None:
        raise ValueError(
            f"{lsn!r} is not an LSN: expected two hexadecimal numbers of up to 8 digits "
            "separated by '/', such as '16/B374D848'"
        )
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def lsn_from_int(position: Any) -> str:
    """Return the LSN text that PostgreSQL prints for a byte position (``%X/%X``)."""
    value = _as_int(position, "a WAL position")
    if not 0 <= value <= LSN_MAX:
        raise ValueError(f"a WAL position must be between 0 and {LSN_MAX}, got {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _position(value: Any, what: str) -> int:
    if isinstance(value, str) and "/" in value:
        return lsn_to_int(value)
    position = _as_int(value, f"{what} (an LSN such as '16/B374D848' or a byte position)")
    if not 0 <= position <= LSN_MAX:
        raise ValueError(f"{what} must be between 0 and {LSN_MAX}, got {position}")
    return position


def lsn_diff(lsn_a: Any, lsn_b: Any) -> int:
    """Return ``lsn_a - lsn_b`` in bytes, like ``pg_wal_lsn_diff``; negative when b is ahead."""
    return _position(lsn_a, "the first LSN") - _position(lsn_b, "the second LSN")


def human_bytes(size: Any) -> str:
    """Return a byte count in binary units with one decimal, such as ``16.0 MiB``.

    Counts below 1024 are printed whole (``512 B``); negative counts (an LSN difference where the
    standby is ahead) keep their sign.
    """
    value = _as_int(size, "a byte count")
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude < 1024:
        return f"{sign}{magnitude} B"
    scaled = float(magnitude)
    for unit in _IEC_UNITS:
        scaled /= 1024.0
        # Compare the rounded figure, so that 1048575 bytes reads "1.0 MiB", not "1024.0 KiB".
        if round(scaled, 1) < 1024.0 or unit == _IEC_UNITS[-1]:
            return f"{sign}{scaled:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def pod_ordinal(pod_name: Any) -> int:
    """Return the ordinal of a StatefulSet pod name (``postgres-2`` -> 2)."""
    if not isinstance(pod_name, str):
        raise TypeError(f"a pod name must be a string such as 'postgres-2', got {pod_name!r}")
    match = _POD_RE.match(pod_name)
    if match is None:
        raise ValueError(
            f"{pod_name!r} is not the name of a StatefulSet pod: expected '<name>-<ordinal>' "
            "such as 'postgres-2' (lowercase letters, digits and '-', ordinal without leading zeros)"
        )
    return int(match.group(2))


def member_names(name: Any, count: Any) -> List[str]:
    """Return the pod names of a StatefulSet ``name`` with ``count`` replicas, in ordinal order."""
    if not isinstance(name, str) or _DNS_LABEL_RE.match(name) is None:
        raise ValueError(
            f"{name!r} is not a valid StatefulSet name for PostgreSQL members: use lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    members = _as_int(count, "the number of members")
    if members < 0:
        raise ValueError(f"the number of members cannot be negative, got {members}")
    if members and len(f"{name}-{members - 1}") > _DNS_LABEL_MAX:
        raise ValueError(
            f"the pod name '{name}-{members - 1}' is longer than {_DNS_LABEL_MAX} characters, "
            "the limit of a hostname: shorten the StatefulSet name"
        )
    return [f"{name}-{ordinal}" for ordinal in range(members)]


def sync_standby_names(members: Iterable[Any], mode: Any, count: Any = 1) -> str:
    """Return the value of ``synchronous_standby_names`` for a cluster of ``members``.

    Every member is listed (each standby's application_name is its pod name), so the same value is
    right whoever is primary: PostgreSQL ignores the primary's own name in the list. ``count``
    therefore may not exceed ``len(members) - 1``, the standbys that exist. ``off`` and a single
    member give ``''`` (asynchronous: nobody could confirm a commit).
    """
    if isinstance(mode, bool) or not isinstance(mode, str):
        raise TypeError(
            f"the synchronous mode must be one of {', '.join(_SYNC_MODES)}, got {mode!r} "
            "(quote \"off\" in YAML: unquoted it is the boolean false)"
        )
    normalized = mode.strip().lower()
    if normalized not in _SYNC_MODES:
        raise ValueError(f"the synchronous mode must be one of {', '.join(_SYNC_MODES)}, got {mode!r}")
    if isinstance(members, (str, bytes, Mapping)) or not isinstance(members, Iterable):
        raise TypeError(f"members must be a list of pod names, got {members!r}")
    names: List[str] = []
    for member in members:
        if not isinstance(member, str) or not member or '"' in member or not member.isprintable():
            raise ValueError(f"{member!r} is not a usable member name for synchronous_standby_names")
        if member in names:
            raise ValueError(f"member {member!r} is listed twice")
        names.append(member)
    wanted = _as_int(count, "the synchronous standby count")
    if normalized == "off" or len(names) <= 1:
        return ""
    if not 1 <= wanted <= len(names) - 1:
        raise ValueError(
            f"the synchronous standby count must be between 1 and {len(names) - 1} "
            f"(the standbys of {len(names)} members), got {wanted}"
        )
    quoted = ", ".join(f'"{name}"' for name in names)
    return f"{normalized.upper()} {wanted} ({quoted})"


_SYNC_PREFIX_RE = re.compile(r"^\s*(?:(ANY|FIRST)\s+)?([0-9]+)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def _sync_name_list(text: str) -> List[str]:
    """The names of a ``synchronous_standby_names`` list: comma-separated, each plain or in double quotes."""
    names: List[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('""', '"')
        if not name:
            raise ValueError(f"synchronous_standby_names {text!r} has an empty standby name")
        names.append(name)
    return names


def parse_sync_standby_names(text: Any) -> tuple:
    """Return ``(method, count, names)`` of a ``synchronous_standby_names`` value.

    ``method`` is ``any``, ``first`` or ``off`` (empty setting: no commit waits for a standby);
    a plain list ``a, b`` means ``FIRST 1 (a, b)``, as PostgreSQL reads it. ``names`` may contain
    ``*`` (any standby). The value is data read from a server or a ConfigMap: anything PostgreSQL
    would not accept raises ``ValueError``.
    """
    if text is None:
        return ("off", 0, [])
    if not isinstance(text, str):
        raise TypeError(f"synchronous_standby_names must be a string, got {text!r}")
    if not text.strip():
        return ("off", 0, [])
    match = _SYNC_PREFIX_RE.match(text)
    if match:
        method = (match.group(1) or "first").lower()
        count = int(match.group(2))
        names = _sync_name_list(match.group(3))
    elif "(" in text or ")" in text:
        raise ValueError(f"synchronous_standby_names {text!r} is not of the form [ANY|FIRST] N (name, ...)")
    else:
        method, count, names = "first", 1, _sync_name_list(text)
    if count == 0:
        raise ValueError(f"synchronous_standby_names {text!r}: the number of synchronous standbys must be greater than zero")
    return (method, count, names)
