# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes permissions each module needs, and the check made before it changes anything.

This module util is PRIVATE to the collection: it may change without notice.

The lists are the modules' documentation too: each module's ``notes`` name exactly these verbs
(a unit test compares them), and the integration tests run the modules under Roles that grant
exactly these and no more. An operation that would fail halfway for a missing verb (the record
written, the Service not moved) is refused before its first change, naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import AuthError, ClusterBackend, StatefulSetMembers


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    why: str = ""

    def describe(self) -> str:
        """``patch services``, ``get statefulsets.apps``, ``create pods/exec``: the way RBAC rules read."""
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {resource}/{self.subresource}" if self.subresource else f"{self.verb} {resource}"


#: What reading a cluster needs (pg_replication_info, and the first look of every operation).
READ = (
    Permission("get", "statefulsets", "apps", why="to read the StatefulSet"),
    Permission("list", "pods", why="to find the members"),
    Permission("get", "configmaps", why="to read the record of the primary and the rendered settings"),
    Permission("get", "services", why="to see which member the -rw Service routes to"),
    Permission("create", "pods", subresource="exec", why="to run psql and ctl.sh in the members"),
)

#: What switchover and failover need besides READ.
OPERATE = READ + (
    Permission("update", "configmaps", why="to write the record of the primary and its lease"),
    Permission("patch", "services", why="to point the -rw Service at the new primary"),
    Permission("patch", "pods", why="to label the members with their role for the -ro Service"),
)


def describe_all(permissions: tuple[Permission, ...]) -> str:
    """``get statefulsets.apps, list pods, ...``: the list as the modules' notes give it."""
    return ", ".join(permission.describe() for permission in permissions)


def refusal(missing: list[Permission], namespace: str, operation: str) -> str:
    """One sentence naming every missing permission and what it is needed for."""
    parts = "; ".join(f"{permission.describe()} ({permission.why})" for permission in missing)
    return f"The credentials lack {parts} in namespace {namespace}, which {operation} needs: nothing was changed."


def require(backend: ClusterBackend, members: StatefulSetMembers, permissions: tuple[Permission, ...], operation: str) -> None:
    """Raises ``AuthError`` naming every permission the API says is missing; a cluster found by label
    selector needs no StatefulSet, and permissions the API cannot judge are left to the requests themselves."""
    wanted = tuple(p for p in permissions if members.statefulset or p.resource != "statefulsets")
    missing = backend.missing_permissions(wanted)
    if missing:
        raise AuthError(refusal(missing, backend.namespace, operation), status=403)
