# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which members a cluster should have: the union of what says so, values read checked as data."""

from __future__ import annotations

import pytest
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._membership import membership, settings_from_conf


def pods(*names: str) -> list[dict]:
    return [{"metadata": {"name": name}} for name in names]


def statefulset(spec: int, status: int | None = None) -> dict:
    return {"spec": {"replicas": spec}, "status": {} if status is None else {"replicas": status}}


SYNC = 'ANY 1 ("postgres-0", "postgres-1", "postgres-2")'


def test_a_member_without_a_pod_is_still_a_member():
    found = membership("postgres", statefulset(3, 3), pods("postgres-0", "postgres-1"), "postgres-0,postgres-1,postgres-2", [SYNC])
    assert found.names == ["postgres-0", "postgres-1", "postgres-2"]
    assert found.absent(pods("postgres-0", "postgres-1")) == ["postgres-2"]
    assert "StatefulSet spec.replicas=3" in found.source_of("postgres-2") and "dbonk8s.members" in found.source_of("postgres-2")


@pytest.mark.parametrize(
    "sts, rendered, sync, expected",
    [
        # A scale in progress: the larger count wins, whichever of spec and status it is.
        (statefulset(2, 3), None, [], 3),
        (statefulset(3, 2), None, [], 3),
        # The StatefulSet says 2, the rendered list and the sync names still say 3.
        (statefulset(2, 2), "postgres-0,postgres-1,postgres-2", [], 3),
        (statefulset(2, 2), None, [SYNC], 3),
        (None, None, [], 1),
    ],
)
def test_the_largest_source_counts(sts, rendered, sync, expected):
    assert len(membership("postgres", sts, pods("postgres-0"), rendered, sync).names) == expected


@pytest.mark.parametrize(
    "rendered",
    ["postgres-0,x;rm -rf /", "postgres-0,postgres-01", "postgres-0,other-1", "postgres-0,POSTGRES-1", "postgres-0,postgres-1 host=evil"],
)
def test_names_that_are_no_pod_of_the_statefulset_are_not_members(rendered):
    found = membership("postgres", statefulset(1, 1), pods("postgres-0"), rendered, [])
    assert found.names == ["postgres-0"]


def test_sync_names_outside_the_cluster_are_kept_as_listed_elsewhere():
    found = membership("postgres", statefulset(2, 2), pods("postgres-0", "postgres-1"), None, ['ANY 1 ("postgres-0", "postgres-1", "dr-site")', "FIRST 1 (*)"])
    assert found.names == ["postgres-0", "postgres-1"]
    assert found.listed_elsewhere == ["dr-site", "*"]
    assert found.sync_settings == ['ANY 1 ("postgres-0", "postgres-1", "dr-site")', "FIRST 1 (*)"]


def test_unreadable_sync_settings_add_no_member_but_are_kept_for_the_quorum():
    found = membership("postgres", statefulset(1, 1), pods("postgres-0"), None, ["ANY 1 (postgres-0, postgres-5"])
    assert found.names == ["postgres-0"] and found.sync_settings == ["ANY 1 (postgres-0, postgres-5"]


def test_invalid_replica_counts_are_ignored():
    found = membership("postgres", {"spec": {"replicas": True}, "status": {"replicas": -1}}, pods("postgres-0"), None, [])
    assert found.names == ["postgres-0"]


def test_without_a_statefulset_name_any_pod_name_with_an_ordinal_counts():
    found = membership(None, None, pods("db-0"), "db-0,db-1,not a name", [])
    assert found.names == ["db-0", "db-1"]


def test_settings_from_the_rendered_postgresql_conf():
    conf = (
        "# comment\nsynchronous_standby_names = 'ANY 1 (\"p-0\", \"p-1\")'\ndbonk8s.members = 'p-0,p-1'  # members\nwork_mem = '4MB'\ndbonk8s.members = 'p-0'\n"
    )
    assert settings_from_conf(conf) == {"synchronous_standby_names": 'ANY 1 ("p-0", "p-1")', "dbonk8s.members": "p-0", "work_mem": "4MB"}
    assert settings_from_conf(None) == {}
