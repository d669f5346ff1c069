# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which members a cluster should have: from what it was told to be, not from the pods that happen to exist.

This module util is PRIVATE to the collection: it can change without notice.

A member whose pod was deleted, or whose node is gone, leaves no trace in a list of pods; counted
from the pods alone, it would simply not exist, and a failover would take "every standby answered"
for true. So the members are the union of every source that says what the cluster should be:

* the StatefulSet's ``spec.replicas`` and ``status.replicas`` (during a scale the two differ: the
  larger counts, so that a scale in progress never shrinks the evidence);
* the rendered member list, ``dbonk8s.members`` in the ``postgresql.conf`` of ConfigMap
  ``<name>-config``;
* the names in ``synchronous_standby_names`` (the rendered one and what each running member reports);
* the pods found.

Every value read here is data: a name is used only when it is a pod name of this StatefulSet
(``<statefulset>-<ordinal>``). A name in ``synchronous_standby_names`` that is not one (a standby
outside the cluster, or a wildcard) can still confirm commits, so it is kept as *listed but not a
member*: nobody can ask it, and a failover counts it as a standby that could not be asked.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import UNORDERED, ClusterBackend, StatefulSetMembers, member_ordinal, read_optional
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import parse_sync_standby_names

# postgresql.conf lines the role renders: "name = 'value'" (the value never holds a quote).
_SETTING_RE = re.compile(r"^\s*([a-z_][a-z0-9_.]*)\s*=\s*'([^'\n]*)'\s*(?:#.*)?$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Membership:
    """The members a cluster should have, and what said so."""

    #: pod names of the StatefulSet that should exist, in ordinal order
    names: list[str]
    #: names in synchronous_standby_names that are no pod of this StatefulSet ("*" included)
    listed_elsewhere: list[str]
    #: where each name came from, for messages: source -> names
    sources: dict[str, list[str]]
    #: every synchronous_standby_names value seen (rendered, and as each running member reports it)
    sync_settings: list[str] = dataclasses.field(default_factory=list)

    def absent(self, pods: Iterable[dict]) -> list[str]:
        """Members that should exist but have no pod."""
        seen = {pod["metadata"]["name"] for pod in pods}
        return [name for name in self.names if name not in seen]

    def source_of(self, name: str) -> str:
        """Which sources list ``name``, in a few words."""
        return ", ".join(source for source, names in self.sources.items() if name in names) or "nothing"


def settings_from_conf(text: str | None) -> dict[str, str]:
    """The ``name = 'value'`` settings of a rendered ``postgresql.conf``; later lines win, as in PostgreSQL."""
    return {match.group(1): match.group(2) for match in _SETTING_RE.finditer(text or "")}


def _own_pod_name(statefulset: str | None, name: str) -> bool:
    """``<statefulset>-<ordinal>`` (any StatefulSet's pod name without a StatefulSet name)."""
    if len(name) > 63 or member_ordinal(name) == UNORDERED:
        return False
    return statefulset is None or name.rsplit("-", 1)[0] == statefulset


def _replicas(statefulset: dict | None) -> dict[str, int]:
    counts = {}
    for section in ("spec", "status"):
        value = ((statefulset or {}).get(section) or {}).get("replicas")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            counts[f"{section}.replicas"] = value
    return counts


def membership(
    statefulset_name: str | None,
    statefulset: dict | None,
    pods: Iterable[dict],
    rendered_members: str | None,
    sync_settings: Iterable[str | None],
) -> Membership:
    """Pure: the union of the sources (see the module docstring)."""
    sources: dict[str, list[str]] = {}
    if statefulset_name is not None:
        for source, count in _replicas(statefulset).items():
            sources[f"StatefulSet {source}={count}"] = [f"{statefulset_name}-{ordinal}" for ordinal in range(count)]
    if rendered_members:
        sources["dbonk8s.members"] = [name.strip() for name in rendered_members.split(",") if name.strip()]
    elsewhere: list[str] = []
    settings_seen: list[str] = []
    for setting in sync_settings:
        if setting is not None and setting not in settings_seen:
            settings_seen.append(setting)
        try:
            _method, _count, names = parse_sync_standby_names(setting)
        except (TypeError, ValueError):
            continue
        if names:
            sources.setdefault("synchronous_standby_names", [])
            sources["synchronous_standby_names"] += [name for name in names if name not in sources["synchronous_standby_names"]]
    sources["pods"] = [pod["metadata"]["name"] for pod in pods]
    names: set[str] = set()
    for source, listed in sources.items():
        for name in listed:
            if _own_pod_name(statefulset_name, name):
                names.add(name)
            elif source == "synchronous_standby_names" and name not in elsewhere:
                elsewhere.append(name)
    ordered = sorted(names, key=lambda name: (member_ordinal(name), name))
    return Membership(names=ordered, listed_elsewhere=elsewhere, sources=sources, sync_settings=settings_seen)


def cluster_name(members: StatefulSetMembers, pods: list[dict]) -> str:
    """The cluster's name: the StatefulSet's, or the pods' ``app.kubernetes.io/instance`` label."""
    if members.statefulset:
        return members.statefulset
    for pod in pods:
        instance = ((pod.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/instance")
        if instance:
            return instance
    return pods[0]["metadata"]["name"].rsplit("-", 1)[0]


def rendered_settings(backend: ClusterBackend, name: str) -> dict[str, str]:
    """The settings of the ``postgresql.conf`` rendered into ConfigMap ``<name>-config`` (none when it cannot be read)."""
    config = read_optional(lambda: backend.get_configmap(f"{name}-config")) or {}
    return settings_from_conf(str((config.get("data") or {}).get("postgresql.conf") or ""))


def membership_of(
    members: StatefulSetMembers, statefulset: dict | None, pods: list[dict], rendered: dict[str, str], reported_sync: Iterable[str | None]
) -> Membership:
    """``membership`` from the objects read (the StatefulSet read with the pods, the rendered settings)
    and the ``synchronous_standby_names`` the running members report."""
    return membership(
        members.statefulset,
        statefulset,
        pods,
        rendered.get("dbonk8s.members"),
        [rendered.get("synchronous_standby_names"), *reported_sync],
    )
