# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a valid value is, for every input the role and the modules take.

This module util is PRIVATE to the collection: it can change without notice.

Each check takes a value and returns ``None`` when it is valid, else what is allowed, as a phrase
that completes "NAME=VALUE ...": the caller names the variable or option. The role's preflight
(``pg_cluster_input_errors``) and the modules' argument checks use the same functions, so that a
name, a quantity or a selector means the same everywhere. The grammars are Kubernetes' own
(k8s.io/apimachinery validation) and PostgreSQL's, for what reaches them: a value refused here would
otherwise fail later, in a pod or at the API.
"""

from __future__ import annotations

import decimal
import ipaddress
import re
from typing import Any, Callable, Optional

Check = Callable[[Any], Optional[str]]

_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_QUANTITY_RE = re.compile(r"(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[eE][-+]?[0-9]+|[KMGTPE]i|[numkMGTPE])?\Z")
_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_ROLE_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
_SETTING_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")
_KUBERNETES_VERSION_RE = re.compile(r"(?P<major>[0-9]+)\.(?P<minor>[0-9]+)\.[0-9]+\Z")
_POSIX_TZ_RE = re.compile(
    # std offset [dst [offset] [,rule]] of POSIX TZ, names alphabetic (JST) or quoted (<+09>).
    r"(?P<std>[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)[-+]?[0-9]{1,2}(:[0-9]{2}){0,2}"
    r"((?P<dst>[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)([-+]?[0-9]{1,2}(:[0-9]{2}){0,2})?(,[A-Za-z0-9/,.:+-]+)?)?\Z"
)
# An image reference as the container runtimes parse it: [host[:port]/]path[:tag][@digest].
_IMAGE_RE = re.compile(
    r"((?P<host>[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(:[0-9]+)?/)?"
    r"(?P<path>[a-z0-9]+([._]|__|-+)?[a-z0-9]*([._-]+[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(@(?P<digest>[a-z0-9]+([+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}))?\Z"
)

#: Role names PostgreSQL reserves (initdb and CREATE ROLE refuse them), and "all", which pg_hba.conf
#: reads as every role.
RESERVED_ROLE_NAMES = frozenset({"public", "none", "all"})

#: The oldest Kubernetes the manifests are written for: Pod Security admission labels (GA in 1.25).
MIN_KUBERNETES_MINOR = 25


def _text(value: Any) -> Optional[str]:
    """The value as a string when it is a scalar that a YAML or -e value can be, else None."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, tuple, set)):
        return None
    return str(value)


def dns_label(max_length: int = 63) -> Check:
    """A DNS label (RFC 1123) of at most ``max_length`` characters: namespaces, names, containers."""

    def check(value: Any) -> Optional[str]:
        text = _text(value)
        if text is not None and len(text) <= max_length and _DNS_LABEL_RE.match(text):
            return None
        return f"must be a DNS label of at most {max_length} characters (lower-case letters, digits and '-', starting and ending with a letter or digit)"

    return check


def dns_1035_label(max_length: int = 63) -> Check:
    """A DNS label that starts with a letter (RFC 1035), as a Service's name must: the cluster's name."""

    def check(value: Any) -> Optional[str]:
        text = _text(value)
        if text is not None and len(text) <= max_length and _DNS_LABEL_RE.match(text) and text[0].isalpha():
            return None
        return f"must be a DNS label of at most {max_length} characters (lower-case letters, digits and '-', starting with a letter)"

    return check


def pod_name(value: Any) -> Optional[str]:
    """The name of a StatefulSet's pod: ``<statefulset>-<ordinal>``, a DNS label."""
    text = _text(value)
    if text is not None and len(text) <= 63 and _DNS_LABEL_RE.match(text) and re.search(r"[a-z0-9]-(0|[1-9][0-9]*)\Z", text):
        return None
    return "must name a member pod, such as postgres-1"


def path(value: Any) -> Optional[str]:
    """A file or directory name: any non-empty string (an empty one would mean the working directory)."""
    text = _text(value)
    return None if text else "must name a file or directory"


def absolute_path(value: Any) -> Optional[str]:
    text = _text(value)
    return None if text and text.startswith("/") else "must be an absolute path"


def dns_subdomain(value: Any) -> Optional[str]:
    """A DNS subdomain (RFC 1123) of at most 253 characters: storage class names."""
    text = _text(value)
    if text is not None and len(text) <= 253 and _DNS_SUBDOMAIN_RE.match(text):
        return None
    return "must be a DNS subdomain of at most 253 characters (lower-case letters, digits, '-' and '.')"


def label_key(value: Any) -> Optional[str]:
    """A label key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters."""
    text = _text(value)
    if text is not None:
        prefix, _slash, name = text.rpartition("/")
        if (not _slash or dns_subdomain(prefix) is None) and len(name) <= 63 and _LABEL_NAME_RE.match(name):
            return None
    return "must be a label key such as app or example.com/team (a name of at most 63 letters, digits, '-', '_' and '.', with an optional DNS prefix and '/')"


def label_value(value: Any) -> Optional[str]:
    """A label value: empty, or at most 63 letters, digits, '-', '_' and '.' starting and ending alphanumerically."""
    text = _text(value)
    if text is not None and (text == "" or (len(text) <= 63 and _LABEL_NAME_RE.match(text))):
        return None
    return "must be a label value (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"


def label_set(value: Any) -> Optional[str]:
    """A mapping of label keys to label values, as a matchLabels or an equality-based selector has."""
    if not isinstance(value, dict):
        return "must be a mapping of label keys to values, such as {app: postgres}"
    for key, item in value.items():
        problem = label_key(key)
        if problem is not None:
            return f"has key {key!r} that {problem}"
        problem = label_value(item)
        if problem is not None:
            return f"has {key}={item!r}, a value that {problem}"
    return None


def parse_quantity(value: Any) -> decimal.Decimal:
    """A Kubernetes resource quantity (10Gi, 500m, 2, 1e3) as a number; ValueError when it is none."""
    text = _text(value)
    match = _QUANTITY_RE.match(text) if text is not None else None
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number = decimal.Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY_SUFFIXES:
        return number * (1024 ** _BINARY_SUFFIXES[suffix])
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number.scaleb(_DECIMAL_SUFFIXES[suffix])


def quantity(value: Any) -> Optional[str]:
    try:
        parse_quantity(value)
    except ValueError:
        return "is not a Kubernetes quantity such as 10Gi, 500m or 2"
    return None


def cidr(value: Any) -> Optional[str]:
    """A network in CIDR notation, IPv4 or IPv6, as NetworkPolicy and pg_hba.conf take it."""
    text = _text(value)
    if text is not None and "/" in text and "%" not in text:
        try:
            ipaddress.ip_network(text, strict=False)
            return None
        except ValueError:
            pass
    return "is not a network in CIDR notation such as 192.0.2.0/24 or 2001:db8::/32"


def role_name(value: Any) -> Optional[str]:
    """A PostgreSQL role name that initdb, CREATE ROLE and pg_hba.conf all take as itself."""
    text = _text(value)
    if text is None or not _ROLE_NAME_RE.match(text):
        return "must be a role name of lower-case letters, digits and '_' (at most 63, not starting with a digit)"
    if text.startswith("pg_"):
        return "is reserved: PostgreSQL keeps role names starting with pg_ for its own roles"
    if text in RESERVED_ROLE_NAMES:
        return f"is reserved: PostgreSQL or pg_hba.conf reads {text!r} as a keyword, not as a role"
    return None


def setting_name(value: Any) -> Optional[str]:
    text = _text(value)
    if text is not None and _SETTING_NAME_RE.match(text):
        return None
    return "must be a setting name (letters, digits and '_', or a custom name such as auto_explain.log_min_duration)"


def setting_value(value: Any) -> Optional[str]:
    """A postgresql.conf value: any scalar; written quoted on one line, so no line break or NUL."""
    if value is None or isinstance(value, (dict, list, tuple, set)):
        return "must be a single value (a string, number or boolean)"
    if isinstance(value, str) and any(char in value for char in "\r\n\0"):
        return "must not contain a line break or NUL: it becomes one line of postgresql.conf"
    return None


def timezone(value: Any, known: Optional[Callable[[str], bool]] = None) -> Optional[str]:
    """A time zone that PostgreSQL and TZ both take: an IANA name (Asia/Tokyo) or a POSIX string (JST-9).

    ``known`` tells whether a name is in the time zone database; without one (no database on this
    machine), only the form is checked.
    """
    text = _text(value)
    allowed = "must be a time zone such as Asia/Tokyo, UTC or JST-9"
    if text is None or not re.match(r"[A-Za-z0-9_+\-/:.,<>]+\Z", text):
        return allowed
    if _POSIX_TZ_RE.match(text):
        return None
    if known is not None and not known(text):
        return f"{allowed}: the time zone database has no {text}"
    return None


def image_reference(value: Any) -> Optional[str]:
    """An image reference: [registry[:port]/]repository[:tag][@digest], lower-case repository path."""
    text = _text(value)
    if text is not None and len(text) <= 4096 and _IMAGE_RE.match(text):
        return None
    return "must be an image reference such as postgres:15.14-alpine or registry.example.com/postgres:15@sha256:..."


def kubernetes_version(value: Any) -> Optional[str]:
    text = _text(value)
    match = _KUBERNETES_VERSION_RE.match(text) if text is not None else None
    if match is None:
        return "must look like 1.34.0"
    if (int(match["major"]), int(match["minor"])) < (1, MIN_KUBERNETES_MINOR):
        return f"is too old: the manifests need Kubernetes 1.{MIN_KUBERNETES_MINOR} or later (Pod Security admission)"
    return None


def integer(minimum: Optional[int] = None, maximum: Optional[int] = None) -> Check:
    """An integer (or its decimal string, as -e passes it) within [minimum, maximum]."""

    def check(value: Any) -> Optional[str]:
        number = as_integer(value)
        if number is not None and (minimum is None or number >= minimum) and (maximum is None or number <= maximum):
            return None
        if minimum is not None and maximum is not None:
            return f"must be a whole number from {minimum} to {maximum}"
        if minimum is not None:
            return f"must be a whole number of at least {minimum}"
        return f"must be a whole number of at most {maximum}"

    return check


def as_integer(value: Any) -> Optional[int]:
    """The integer a value stands for (5, "5"), or None: no float, no bool, no "5.0" or "abc"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r"\s*[-+]?[0-9]+\s*\Z", value):
        return int(value)
    return None


def first_problem(name: str, value: Any, check: Check) -> Optional[str]:
    """``NAME=VALUE <what is allowed>.`` when ``check`` refuses ``value``, else None."""
    problem = check(value)
    if problem is None:
        return None
    shown = value if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
    return f"{name}={shown} {problem}."
