# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure functions behind the filters and the modules, checked against PostgreSQL's own figures."""

from __future__ import annotations

import pytest

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _pgtext


@pytest.mark.parametrize(
    ("lsn", "position"),
    [
        ("0/0", 0),
        # pg_lsn '0/3000060'::pg_lsn - '0/0' = 50331744 (SELECT in PostgreSQL 15).
        ("0/3000060", 50331744),
        ("16/B374D848", 0x16 * 2**32 + 0xB374D848),
        ("16/b374d848", 0x16 * 2**32 + 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
        (" 1/0 ", 2**32),
    ],
)
def test_lsn_to_int(lsn: str, position: int) -> None:
    assert _pgtext.lsn_to_int(lsn) == position


@pytest.mark.parametrize("bad", ["", "16", "16/", "/1", "1/2/3", "G/0", "123456789/0", "0/123456789", "-1/0", "0x1/0"])
def test_lsn_to_int_refuses_text_that_is_no_lsn(bad: str) -> None:
    with pytest.raises(ValueError, match="is not an LSN"):
        _pgtext.lsn_to_int(bad)


@pytest.mark.parametrize("bad", [None, 5, 1.5, ["0/0"], b"0/0"])
def test_lsn_to_int_refuses_non_strings(bad: object) -> None:
    with pytest.raises(TypeError, match="must be a string"):
        _pgtext.lsn_to_int(bad)


@pytest.mark.parametrize(
    ("position", "lsn"),
    [(0, "0/0"), (50331744, "0/3000060"), (2**64 - 1, "FFFFFFFF/FFFFFFFF"), ("4294967296", "1/0"), (2.0**32, "1/0")],
)
def test_lsn_from_int(position: object, lsn: str) -> None:
    assert _pgtext.lsn_from_int(position) == lsn


@pytest.mark.parametrize("position", [0, 1, 2**32 - 1, 2**32, 0x16B374D848, 2**64 - 1])
def test_lsn_round_trip(position: int) -> None:
    assert _pgtext.lsn_to_int(_pgtext.lsn_from_int(position)) == position


@pytest.mark.parametrize(("bad", "error"), [(-1, ValueError), (2**64, ValueError), (True, TypeError), ("0/1", TypeError), (1.5, TypeError), (None, TypeError)])
def test_lsn_from_int_refuses(bad: object, error: type) -> None:
    with pytest.raises(error):
        _pgtext.lsn_from_int(bad)


@pytest.mark.parametrize(
    ("lsn_a", "lsn_b", "diff"),
    [
        ("0/5000000", "0/4000000", 16 * 1024 * 1024),
        ("0/4000000", "0/5000000", -16 * 1024 * 1024),
        # Crossing the 32-bit boundary: '1/0' - '0/FFFFFFFF' = 1 in pg_wal_lsn_diff.
        ("1/0", "0/FFFFFFFF", 1),
        ("16/B374D848", "16/B374D848", 0),
        ("0/10", 0, 16),
        (32, "0/10", 16),
    ],
)
def test_lsn_diff(lsn_a: object, lsn_b: object, diff: int) -> None:
    assert _pgtext.lsn_diff(lsn_a, lsn_b) == diff


@pytest.mark.parametrize(("lsn_a", "lsn_b"), [("0/X", "0/0"), ("0/0", None), (-1, "0/0"), (True, 0)])
def test_lsn_diff_refuses(lsn_a: object, lsn_b: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        _pgtext.lsn_diff(lsn_a, lsn_b)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (16 * 1024**2, "16.0 MiB"),
        # Rounds up into the next unit instead of printing "1024.0 KiB".
        (1024**2 - 1, "1.0 MiB"),
        (int(2.5 * 1024**3), "2.5 GiB"),
        (1024**4, "1.0 TiB"),
        (1024**6, "1.0 EiB"),
        (2048 * 1024**6, "2048.0 EiB"),
        (-16 * 1024**2, "-16.0 MiB"),
        (-10, "-10 B"),
        ("2048", "2.0 KiB"),
    ],
)
def test_human_bytes(size: object, text: str) -> None:
    assert _pgtext.human_bytes(size) == text


@pytest.mark.parametrize("bad", [None, "ten", 1.5, True, [1]])
def test_human_bytes_refuses(bad: object) -> None:
    with pytest.raises(TypeError, match="byte count"):
        _pgtext.human_bytes(bad)


@pytest.mark.parametrize(("pod", "ordinal"), [("postgres-0", 0), ("postgres-2", 2), ("pg-a-12", 12), ("a-10", 10)])
def test_pod_ordinal(pod: str, ordinal: int) -> None:
    assert _pgtext.pod_ordinal(pod) == ordinal


@pytest.mark.parametrize("bad", ["postgres", "postgres-", "postgres-01", "Postgres-1", "-1", "postgres-x", "postgres_1", ""])
def test_pod_ordinal_refuses_names_of_no_statefulset_pod(bad: str) -> None:
    with pytest.raises(ValueError, match="not the name of a StatefulSet pod"):
        _pgtext.pod_ordinal(bad)


def test_pod_ordinal_refuses_non_strings() -> None:
    with pytest.raises(TypeError):
        _pgtext.pod_ordinal(2)


def test_member_names() -> None:
    assert _pgtext.member_names("postgres", 3) == ["postgres-0", "postgres-1", "postgres-2"]
    assert _pgtext.member_names("db", "1") == ["db-0"]
    assert _pgtext.member_names("db", 0) == []


def test_member_names_round_trip_through_pod_ordinal() -> None:
    assert [_pgtext.pod_ordinal(name) for name in _pgtext.member_names("postgres", 12)] == list(range(12))


@pytest.mark.parametrize(("name", "count"), [("Postgres", 3), ("pg_1", 3), ("-pg", 3), ("", 1), (None, 1), ("pg", -1)])
def test_member_names_refuses(name: object, count: object) -> None:
    with pytest.raises(ValueError):
        _pgtext.member_names(name, count)


def test_member_names_refuses_hostnames_longer_than_a_dns_label() -> None:
    assert _pgtext.member_names("p" * 61, 10)[-1] == "p" * 61 + "-9"
    with pytest.raises(ValueError, match="longer than 63"):
        _pgtext.member_names("p" * 61, 11)


@pytest.mark.parametrize("count", [True, "three", 2.5, None])
def test_member_names_refuses_counts_that_are_no_integer(count: object) -> None:
    with pytest.raises(TypeError):
        _pgtext.member_names("postgres", count)


THREE = ["postgres-0", "postgres-1", "postgres-2"]
FIVE = [f"postgres-{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("members", "mode", "count", "value"),
    [
        (THREE, "any", 1, 'ANY 1 ("postgres-0", "postgres-1", "postgres-2")'),
        (THREE, "first", 1, 'FIRST 1 ("postgres-0", "postgres-1", "postgres-2")'),
        (THREE, "FIRST", "2", 'FIRST 2 ("postgres-0", "postgres-1", "postgres-2")'),
        (FIVE, "any", 2, 'ANY 2 ("postgres-0", "postgres-1", "postgres-2", "postgres-3", "postgres-4")'),
        (FIVE, "any", 4, 'ANY 4 ("postgres-0", "postgres-1", "postgres-2", "postgres-3", "postgres-4")'),
        (tuple(THREE), "any", 1, 'ANY 1 ("postgres-0", "postgres-1", "postgres-2")'),
        ((name for name in THREE), "any", 1, 'ANY 1 ("postgres-0", "postgres-1", "postgres-2")'),
        (THREE, "off", 1, ""),
        (FIVE, "off", 4, ""),
        (["postgres-0"], "any", 1, ""),
        (["postgres-0"], "first", 1, ""),
        ([], "any", 1, ""),
    ],
)
def test_sync_standby_names(members: object, mode: str, count: object, value: str) -> None:
    assert _pgtext.sync_standby_names(members, mode, count) == value


@pytest.mark.parametrize(
    ("members", "mode", "count", "message"),
    [
        (THREE, "any", 3, "between 1 and 2"),
        (THREE, "any", 0, "between 1 and 2"),
        (FIVE, "first", 5, "between 1 and 4"),
        (THREE, "quorum", 1, "one of any, first, off"),
        (THREE, "", 1, "one of any, first, off"),
        (THREE + ["postgres-1"], "any", 1, "listed twice"),
        (["postgres-0", 'x"y'], "any", 1, "not a usable member name"),
        (["postgres-0", ""], "any", 1, "not a usable member name"),
        (["postgres-0", 1], "any", 1, "not a usable member name"),
    ],
)
def test_sync_standby_names_refuses_values(members: object, mode: str, count: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _pgtext.sync_standby_names(members, mode, count)


@pytest.mark.parametrize(
    ("members", "mode", "count", "message"),
    [
        # An unquoted `off` in YAML arrives as False: say so instead of failing obscurely.
        (THREE, False, 1, 'quote "off"'),
        (THREE, None, 1, "one of any, first, off"),
        ("postgres-0", "any", 1, "list of pod names"),
        ({"postgres-0": 1}, "any", 1, "list of pod names"),
        (THREE, "any", True, "must be an integer"),
        (THREE, "any", "one", "must be an integer"),
    ],
)
def test_sync_standby_names_refuses_types(members: object, mode: object, count: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        _pgtext.sync_standby_names(members, mode, count)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("", ("off", 0, [])),
        (None, ("off", 0, [])),
        ('ANY 1 ("postgres-0", "postgres-1")', ("any", 1, ["postgres-0", "postgres-1"])),
        ("any 2 (a, b, c)", ("any", 2, ["a", "b", "c"])),
        ("FIRST 2 (*)", ("first", 2, ["*"])),
        ("2 (a, b)", ("first", 2, ["a", "b"])),
        ("a, b", ("first", 1, ["a", "b"])),
        ("*", ("first", 1, ["*"])),
        ('ANY 1 ("with ""quote""", b)', ("any", 1, ['with "quote"', "b"])),
    ],
)
def test_parse_sync_standby_names(value: object, parsed: tuple) -> None:
    assert _pgtext.parse_sync_standby_names(value) == parsed


@pytest.mark.parametrize("bad", ["ANY 0 (a, b)", "ANY 1 (a, b", "ANY 1 a, b)", "a, , b", "ANY 1 ()", "ALL 1 (a)"])
def test_parse_sync_standby_names_refuses_what_postgresql_would(bad: str) -> None:
    with pytest.raises(ValueError):
        _pgtext.parse_sync_standby_names(bad)


def test_parse_sync_standby_names_refuses_non_strings() -> None:
    with pytest.raises(TypeError):
        _pgtext.parse_sync_standby_names(["a"])
