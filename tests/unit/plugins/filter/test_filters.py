# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters as Ansible loads them: registered names, results, and AnsibleFilterError on bad input.

The transformations themselves are covered in tests/unit/plugins/module_utils/test_pgtext.py; here
each filter goes through ansible-core's own Jinja environment, the way a playbook calls it.
"""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.template import Templar, trust_as_template

from ansible_collections.dbonk8s.postgresql.plugins.filter import pgtext

FILTERS = {
    "pg_lsn_to_int",
    "pg_lsn_from_int",
    "pg_lsn_diff",
    "pg_human_bytes",
    "pg_pod_ordinal",
    "pg_member_names",
    "pg_sync_standby_names",
}


def render(expression: str, **variables: Any) -> Any:
    return Templar(loader=None, variables=variables).template(trust_as_template("{{ " + expression + " }}"))


def test_every_filter_is_registered_under_its_fixed_name() -> None:
    assert set(pgtext.FilterModule().filters()) == FILTERS


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'16/B374D848' | dbonk8s.postgresql.pg_lsn_to_int", 0x16B374D848),
        ("50331744 | dbonk8s.postgresql.pg_lsn_from_int", "0/3000060"),
        ("'0/5000000' | dbonk8s.postgresql.pg_lsn_diff('0/4000000')", 16777216),
        ("'0/5000000' | dbonk8s.postgresql.pg_lsn_diff('0/4000000') | dbonk8s.postgresql.pg_human_bytes", "16.0 MiB"),
        ("'postgres-2' | dbonk8s.postgresql.pg_pod_ordinal", 2),
        ("'postgres' | dbonk8s.postgresql.pg_member_names(3)", ["postgres-0", "postgres-1", "postgres-2"]),
        (
            "'postgres' | dbonk8s.postgresql.pg_member_names(3) | dbonk8s.postgresql.pg_sync_standby_names('any', 1)",
            'ANY 1 ("postgres-0", "postgres-1", "postgres-2")',
        ),
        (
            "'postgres' | dbonk8s.postgresql.pg_member_names('3') | dbonk8s.postgresql.pg_sync_standby_names('first', '2')",
            'FIRST 2 ("postgres-0", "postgres-1", "postgres-2")',
        ),
        ("'postgres' | dbonk8s.postgresql.pg_member_names(3) | dbonk8s.postgresql.pg_sync_standby_names('off', 1)", ""),
        ("'postgres' | dbonk8s.postgresql.pg_member_names(1) | dbonk8s.postgresql.pg_sync_standby_names('any', 1)", ""),
        ("['postgres-0', 'postgres-2'] | map('dbonk8s.postgresql.pg_pod_ordinal') | max", 2),
    ],
)
def test_filters_in_templates(expression: str, expected: Any) -> None:
    assert render(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("'16-B374D848' | dbonk8s.postgresql.pg_lsn_to_int", "pg_lsn_to_int: '16-B374D848' is not an LSN"),
        ("-1 | dbonk8s.postgresql.pg_lsn_from_int", "pg_lsn_from_int: a WAL position must be between 0"),
        ("'0/5' | dbonk8s.postgresql.pg_lsn_diff('x')", "pg_lsn_diff: "),
        ("'many' | dbonk8s.postgresql.pg_human_bytes", "pg_human_bytes: a byte count must be an integer"),
        ("'postgres' | dbonk8s.postgresql.pg_pod_ordinal", "pg_pod_ordinal: 'postgres' is not the name of a StatefulSet pod"),
        ("'Postgres' | dbonk8s.postgresql.pg_member_names(3)", "pg_member_names: 'Postgres' is not a valid StatefulSet name"),
        (
            "['postgres-0', 'postgres-1'] | dbonk8s.postgresql.pg_sync_standby_names('any', 2)",
            "pg_sync_standby_names: the synchronous standby count must be between 1 and 1",
        ),
        ("['postgres-0', 'postgres-1'] | dbonk8s.postgresql.pg_sync_standby_names(false, 1)", 'quote "off"'),
    ],
)
def test_bad_input_raises_a_filter_error_naming_the_filter(expression: str, message: str) -> None:
    with pytest.raises(AnsibleError, match=message.replace("(", r"\(")) as caught:
        render(expression)
    # ansible-core wraps the plugin's exception; the filter's own error must be the cause.
    errors = []
    error: BaseException | None = caught.value
    while error is not None:
        errors.append(error)
        error = error.__cause__ or getattr(error, "orig_exc", None)
    assert any(isinstance(e, AnsibleFilterError) for e in errors)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_direct_call_raises_ansible_filter_error(name: str) -> None:
    bad_args: dict[str, tuple[Any, ...]] = {
        "pg_lsn_to_int": (None,),
        "pg_lsn_from_int": ("x",),
        "pg_lsn_diff": ("0/0", "x/y"),
        "pg_human_bytes": (None,),
        "pg_pod_ordinal": ("x",),
        "pg_member_names": ("x", -1),
        "pg_sync_standby_names": (["a-0", "a-1"], "sometimes", 1),
    }
    with pytest.raises(AnsibleFilterError, match=f"^{name}: "):
        pgtext.FilterModule().filters()[name](*bad_args[name])
