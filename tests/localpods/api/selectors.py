"""Label and field selectors in the API's query syntax (``a=b,c!=d,e in (f,g),!h``), parsed once and matched."""

from __future__ import annotations

import re
from typing import Callable

from tests.localpods.api.errors import bad_request

Requirement = Callable[[dict], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQUALITY = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split(selector: str) -> list[str]:
    """Splits at commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def label_selector(selector: str | None) -> Requirement:
    """A predicate over objects for a ``labelSelector`` query parameter; 400 for a malformed one."""
    if not selector or not selector.strip():
        return lambda obj: True
    requirements: list[Requirement] = []
    for part in _split(selector):
        equality = _EQUALITY.match(part)
        if equality:
            key, operator, value = equality.groups()
            if operator == "!=":
                requirements.append(lambda obj, key=key, value=value: _labels(obj).get(key) != value)
            else:
                requirements.append(lambda obj, key=key, value=value: _labels(obj).get(key) == value)
            continue
        found = _SET.match(part)
        if not found:
            raise bad_request(f"unable to parse requirement: found '{part.strip()}', expected: identifier")
        negated, key, operator, values = found.groups()
        if operator:
            allowed = {value.strip() for value in values.split(",") if value.strip()}
            if operator == "in":
                requirements.append(lambda obj, key=key, allowed=allowed: _labels(obj).get(key) in allowed)
            else:
                requirements.append(lambda obj, key=key, allowed=allowed: _labels(obj).get(key) not in allowed)
        elif negated:
            requirements.append(lambda obj, key=key: key not in _labels(obj))
        else:
            requirements.append(lambda obj, key=key: key in _labels(obj))
    return lambda obj: all(requirement(obj) for requirement in requirements)


def _field(obj: dict, path: str) -> str | None:
    value: object = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return None if value is None else str(value)


def field_selector(selector: str | None) -> Requirement:
    """A predicate for a ``fieldSelector``: ``=``, ``==`` and ``!=`` on any dotted path (the real server
    allows only some paths per kind; every kind's ``metadata.name`` and ``metadata.namespace`` among them)."""
    if not selector or not selector.strip():
        return lambda obj: True
    requirements: list[Requirement] = []
    for part in _split(selector):
        found = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not found:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        path, operator, value = found.groups()
        if operator == "!=":
            requirements.append(lambda obj, path=path, value=value: _field(obj, path) != value)
        else:
            requirements.append(lambda obj, path=path, value=value: (_field(obj, path) or "") == value)
    return lambda obj: all(requirement(obj) for requirement in requirements)


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A ``metav1.LabelSelector`` (``matchLabels`` and ``matchExpressions``) against labels; empty matches all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
