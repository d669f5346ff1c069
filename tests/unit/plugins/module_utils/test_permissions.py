# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The permissions the modules document are the ones they check, and a missing one is refused by name."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.dbonk8s.postgresql.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _permissions
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import AuthError, ClusterBackend, StatefulSetMembers
from ansible_collections.dbonk8s.postgresql.plugins.modules import pg_failover, pg_switchover


def notes(documentation: str) -> str:
    return " ".join(" ".join(yaml.safe_load(documentation)["notes"]).split())


def test_the_connection_notes_name_exactly_the_read_permissions():
    assert f"C({_permissions.describe_all(_permissions.READ)})" in notes(ModuleDocFragment.DOCUMENTATION)


@pytest.mark.parametrize("module", [pg_switchover, pg_failover])
def test_the_operations_notes_name_exactly_what_they_add(module):
    added = _permissions.OPERATE[len(_permissions.READ) :]
    assert _permissions.OPERATE[: len(_permissions.READ)] == _permissions.READ
    assert f"C({_permissions.describe_all(added)})" in notes(module.DOCUMENTATION)


class Answers(ClusterBackend):
    """A backend whose API answers access reviews from a table (absent: the API cannot say)."""

    def __init__(self, answers: dict[str, bool]) -> None:
        super().__init__("postgres")
        self.answers = answers
        self.asked: list[str] = []

    def allowed(self, verb: str, resource: str, group: str = "", subresource: str = "") -> bool | None:
        name = _permissions.Permission(verb, resource, group, subresource).describe()
        self.asked.append(name)
        return self.answers.get(name)


def every(permissions, value=True) -> dict[str, bool]:
    return {p.describe(): value for p in permissions}


def test_all_granted_passes():
    backend = Answers(every(_permissions.OPERATE))
    _permissions.require(backend, StatefulSetMembers(statefulset="postgres"), _permissions.OPERATE, "a switchover")
    assert backend.asked == [p.describe() for p in _permissions.OPERATE]


def test_a_missing_verb_is_refused_by_name_and_purpose():
    backend = Answers({**every(_permissions.OPERATE), "patch services": False})
    with pytest.raises(AuthError) as refused:
        _permissions.require(backend, StatefulSetMembers(statefulset="postgres"), _permissions.OPERATE, "a switchover")
    assert str(refused.value) == (
        "The credentials lack patch services (to point the -rw Service at the new primary) in namespace postgres, "
        "which a switchover needs: nothing was changed."
    )


def test_every_missing_verb_is_named():
    backend = Answers({**every(_permissions.OPERATE), "patch pods": False, "create pods/exec": False})
    with pytest.raises(AuthError) as refused:
        _permissions.require(backend, StatefulSetMembers(statefulset="postgres"), _permissions.OPERATE, "a failover")
    assert "create pods/exec (to run psql and ctl.sh in the members); patch pods (" in str(refused.value)


def test_what_the_api_cannot_judge_is_left_to_the_requests():
    _permissions.require(Answers({}), StatefulSetMembers(statefulset="postgres"), _permissions.OPERATE, "a switchover")


def test_members_by_label_selector_need_no_statefulset():
    backend = Answers({**every(_permissions.READ), "get statefulsets.apps": False})
    _permissions.require(backend, StatefulSetMembers(label_selector={"app": "pg"}), _permissions.READ, "reading the replication status")
    assert "get statefulsets.apps" not in backend.asked
    with pytest.raises(AuthError):
        _permissions.require(backend, StatefulSetMembers(statefulset="postgres"), _permissions.READ, "reading the replication status")
