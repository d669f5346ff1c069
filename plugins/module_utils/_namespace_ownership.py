# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whose namespace it is: the pg_cluster role's decisions about the Namespace, as pure functions.

This module util is PRIVATE to the collection: it can change without notice.

The role creates a namespace only when it does not exist, and records on it, in the annotation
``dbonk8s.io/clusters``, the clusters it holds. That annotation, and nothing else (not the
``managed-by`` label, which anyone can set), is what lets a teardown delete the namespace; and
only when the cluster torn down is the last one listed and nothing else lives there. A value read
from the annotation is data: anything but a comma-separated list of cluster names keeps the
namespace, and is said.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional

OWNERS_ANNOTATION = "dbonk8s.io/clusters"
# The annotation as a JSON pointer (RFC 6901: "/" in a key is written "~1").
OWNERS_POINTER = "/metadata/annotations/" + OWNERS_ANNOTATION.replace("~", "~0").replace("/", "~1")

_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# What Kubernetes puts into every namespace by itself: its presence says nothing about other users.
_BUILT_IN = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


class OwnersAnnotationError(ValueError):
    """The annotation holds something other than a list of cluster names."""


def owners(namespace: Optional[Mapping[str, Any]]) -> Optional[list[str]]:
    """The clusters listed on a Namespace the role created, or None when the role did not create it.

    An empty list is a namespace the role created whose clusters are all gone but which was kept
    for what else it holds. Raises OwnersAnnotationError on a malformed value."""
    annotations = ((namespace or {}).get("metadata") or {}).get("annotations") or {}
    if OWNERS_ANNOTATION not in annotations:
        return None
    value = annotations[OWNERS_ANNOTATION]
    if not isinstance(value, str):
        raise OwnersAnnotationError(f"the annotation {OWNERS_ANNOTATION} is not a string")
    names = [name.strip() for name in value.split(",")] if value.strip() else []
    bad = [name for name in names if not _CLUSTER_NAME.match(name)]
    if bad:
        raise OwnersAnnotationError(f"the annotation {OWNERS_ANNOTATION}={value!r} is not a comma-separated list of cluster names")
    return sorted(set(names))


def _replace_owners(current: Optional[str], names: Iterable[str]) -> list[dict[str, Any]]:
    """A JSON patch that changes the annotation only if nobody changed it since it was read."""
    value = ",".join(sorted(set(names)))
    return [{"op": "test", "path": OWNERS_POINTER, "value": current}, {"op": "replace", "path": OWNERS_POINTER, "value": value}]


def _name_of(namespace: Mapping[str, Any]) -> str:
    return str((namespace.get("metadata") or {}).get("name") or "")


def deploy_plan(namespace: Optional[Mapping[str, Any]], cluster: str, manage: bool) -> dict[str, Any]:
    """What a deploy of ``cluster`` does to the Namespace ``namespace`` (None: it does not exist).

    Returns ``create`` (make the namespace, listing ``cluster``), ``annotations`` (those of a
    namespace to create), ``patch`` (JSON patch ops for the annotation of a namespace the role created,
    empty when nothing changes), ``labels`` (apply the role's labels: only to a namespace created now, or
    when the user manages the namespace), ``created_by_role`` and ``error`` (a sentence; nothing may be
    changed when set)."""
    plan: dict[str, Any] = {
        "create": False,
        "annotations": {OWNERS_ANNOTATION: cluster},
        "patch": [],
        "labels": bool(manage),
        "created_by_role": False,
        "error": "",
    }
    if not namespace:
        plan.update(create=True, labels=True, created_by_role=True)
        return plan
    name = _name_of(namespace)
    try:
        listed = owners(namespace)
    except OwnersAnnotationError as error:
        plan["error"] = f"Namespace {name}: {error}. Correct or remove the annotation; nothing was changed."
        plan["labels"] = False
        return plan
    if listed is not None:
        plan["created_by_role"] = True
        if cluster not in listed:
            current = namespace["metadata"]["annotations"][OWNERS_ANNOTATION]
            plan["patch"] = _replace_owners(current, [*listed, cluster])
    return plan


def leftovers(objects: Iterable[Mapping[str, Any]], clusters: Iterable[str]) -> list[str]:
    """``Kind/name`` of the objects of a namespace that belong to none of ``clusters`` (labelled with
    the name and instance of one), were not put there by Kubernetes itself, and are not going already."""
    ours = set(clusters)
    found = []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        kind, name = str(obj.get("kind") or ""), str(metadata.get("name") or "")
        if (kind, name) in _BUILT_IN or metadata.get("deletionTimestamp"):
            continue
        if labels.get("app.kubernetes.io/name") == "postgres" and labels.get("app.kubernetes.io/instance") in ours:
            continue
        found.append(f"{kind}/{name}")
    return sorted(found)


def teardown_plan(namespace: Optional[Mapping[str, Any]], cluster: str, objects: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What a teardown of ``cluster`` with its volumes does to the Namespace: ``delete`` it, or keep it
    with ``patch`` (JSON patch ops that take the cluster off the annotation) and ``kept`` (why, a
    sentence). ``objects`` are what the namespace still holds, of the kinds the role looked at."""
    plan: dict[str, Any] = {"delete": False, "patch": [], "kept": ""}
    if not namespace:
        return plan
    name = _name_of(namespace)
    if (namespace.get("metadata") or {}).get("deletionTimestamp"):
        plan["kept"] = f"Namespace {name} is being deleted already."
        return plan
    try:
        listed = owners(namespace)
    except OwnersAnnotationError as error:
        plan["kept"] = f"Namespace {name} was kept: {error}, so the role cannot tell whether it created it."
        return plan
    if listed is None:
        plan["kept"] = f"Namespace {name} was kept: the role did not create it (it has no {OWNERS_ANNOTATION} annotation)."
        return plan
    if cluster not in listed:
        plan["kept"] = f"Namespace {name} was kept: it does not list cluster {cluster} in its {OWNERS_ANNOTATION} annotation."
        return plan
    others = [owner for owner in listed if owner != cluster]
    foreign = leftovers(objects, listed)
    if not others and not foreign:
        plan["delete"] = True
        return plan
    plan["patch"] = _replace_owners(namespace["metadata"]["annotations"][OWNERS_ANNOTATION], others)
    reasons = []
    if others:
        reasons.append(f"it holds the clusters {', '.join(others)}")
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        reasons.append(f"it holds objects the role did not create: {shown}")
    plan["kept"] = f"Namespace {name} was kept: {'; '.join(reasons)}."
    return plan
