# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The failover procedure against the simulated cluster of test_switchover_fake_cluster."""

from __future__ import annotations

import pytest
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ExecTimeout, StatefulSetMembers
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._failover import (
    Answer,
    Failover,
    FailoverFailed,
    FailoverOptions,
    SyncRule,
    choose,
    sync_rule,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import Timeouts
from test_switchover_fake_cluster import NAME, FakeCluster


@pytest.fixture
def cluster(tmp_path) -> FakeCluster:
    fake = FakeCluster(str(tmp_path))
    fake.write()
    return fake


def failover(cluster: FakeCluster, check_mode: bool = False, **options) -> dict:
    operation = Failover(
        cluster.backend(), StatefulSetMembers(statefulset=NAME), Timeouts(exec=5, stop=5, promote=5, rejoin=5), lease_seconds=10, sleep=lambda _s: None
    )
    return operation.run(FailoverOptions(**options), check_mode=check_mode)


def lose_primary(cluster: FakeCluster) -> int:
    primary = cluster.members["postgres-0"]
    acknowledged = primary.lsn
    primary.running = False
    primary.gone = True
    return acknowledged


def test_lost_primary_fails_over_to_the_most_advanced_standby(cluster):
    cluster.members["postgres-1"].paused = True
    cluster.write(0x800)
    acknowledged = lose_primary(cluster)
    result = failover(cluster)
    assert result["changed"] is True
    assert (result["previous_primary"], result["new_primary"], result["epoch"]) == ("postgres-0", "postgres-2", 2)
    assert result["lossless"] is True and result["gap_bytes"] == 0
    assert [probe["alive"] for probe in result["probes"]] == [False, False, False]
    assert [step["name"] for step in result["steps"]] == ["confirm", "choose", "lease", "record", "promote", "route", "repoint", "release"]
    assert cluster.primaries() == ["postgres-2"]
    assert cluster.members["postgres-2"].lsn >= acknowledged
    assert cluster.record()["data"] == {"primary": "postgres-2", "epoch": "2"}
    assert cluster.service_target() == "postgres-2"
    assert cluster.members["postgres-1"].upstream == "postgres-2"
    # A second run finds the recorded primary running: nothing to do.
    again = failover(cluster)
    assert again["changed"] is False


def test_check_mode_returns_the_plan_and_changes_nothing(cluster):
    from test_switchover import mutations

    cluster.write(0x800)
    lose_primary(cluster)
    record = cluster.record()
    result = failover(cluster, check_mode=True)
    assert result["changed"] is True
    assert (result["previous_primary"], result["new_primary"], result["primary"]) == ("postgres-0", "postgres-1", "postgres-1")
    assert result["diff"] == {"before": {"primary": "postgres-0", "epoch": 1}, "after": {"primary": "postgres-1", "epoch": 2}}
    assert [step["name"] for step in result["steps"]] == ["confirm", "choose"]
    assert mutations(cluster) == []
    assert cluster.record() == record and cluster.primaries() == []
    assert cluster.service_target() == "postgres-0"


def test_alive_primary_is_not_failed_over(cluster):
    record = cluster.record()
    result = failover(cluster, probes=2)
    assert result["changed"] is False and "nothing to fail over" in result["findings"][0]
    assert cluster.record() == record and cluster.primaries() == ["postgres-0"]
    # One look at every member, read-only, and nothing else.
    assert sorted((pod, argv[1]) for pod, argv in cluster.calls) == [("postgres-0", "state"), ("postgres-1", "state"), ("postgres-2", "state")]


def test_slow_primary_that_answers_within_the_window_is_not_failed_over(cluster):
    seen = {"n": 0}

    def slow_first(pod, argv):
        if pod == "postgres-0" and argv[1:2] == ["state"]:
            seen["n"] += 1
            if seen["n"] == 1:
                raise ExecTimeout("exec in pod postgres-0: no exit status within 5s")

    cluster.before_exec = slow_first
    # The record does not name the running primary's peer... the primary is still running: make
    # the first observation believe it is gone by hiding it from psql too.
    cluster.members["postgres-0"].running = False
    cluster.members["postgres-0"].gone = False

    def back_later(pod, argv):
        slow_first(pod, argv)
        if seen["n"] >= 1:
            cluster.members["postgres-0"].running = True

    cluster.before_exec = back_later
    with pytest.raises(FailoverFailed, match="alive"):
        failover(cluster, probes=3)
    assert cluster.record()["data"]["primary"] == "postgres-0"


def test_candidate_too_far_behind_is_refused_with_the_gap_unless_forced(cluster):
    cluster.members["postgres-2"].paused = True
    cluster.write(0x5000)
    lose_primary(cluster)
    with pytest.raises(FailoverFailed, match="candidate postgres-2 received 20480 bytes less WAL than postgres-1"):
        failover(cluster, candidate="postgres-2")
    assert cluster.record()["data"]["primary"] == "postgres-0"
    result = failover(cluster, candidate="postgres-2", force=True)
    assert result["new_primary"] == "postgres-2" and result["lossless"] is False
    # postgres-1 had WAL past the fork: stopped, rewound, started as a standby of postgres-2.
    assert ("postgres-1", "stop") in [(pod, argv[1]) for pod, argv in cluster.calls if argv[0].endswith("ctl.sh")]
    assert cluster.members["postgres-1"].running and cluster.members["postgres-1"].upstream == "postgres-2"


def test_asynchronous_cluster_needs_force(cluster):
    cluster.sync_names = ""
    lose_primary(cluster)
    with pytest.raises(FailoverFailed, match="asynchronous replication"):
        failover(cluster)
    assert failover(cluster, force=True)["new_primary"] == "postgres-1"


def standby(received: str | None, replayed: str | None = None, **extra) -> Answer:
    state = {"running": True, "accepting": True, "in_recovery": True, "receive_lsn": received, "replay_lsn": replayed or received, **extra}
    return Answer(state)


NOT_ASKED = {
    "absent": Answer(None, "it has no pod"),
    "frozen": Answer(None, "no answer within 3s (frozen, cut off or overloaded)"),
    "stopped": Answer({"running": False, "accepting": False, "hold": True, "in_recovery": None}),
    "starting": Answer({"running": True, "accepting": False, "in_recovery": None}),
    "restarted": standby(None, "0/3000000"),
}


@pytest.mark.parametrize("how", sorted(NOT_ASKED))
def test_a_standby_that_cannot_be_asked_counts_against_the_quorum(how):
    # ANY 1 over two standbys: the one not asked may be the only one that confirmed the last commits.
    answers = {"p-1": standby("0/3000100"), "p-2": NOT_ASKED[how]}
    choice = choose(answers, "p-0", SyncRule("any", 1), requested=None, max_lag_bytes=0)
    assert choice.candidate == "p-1" and choice.lossless is False
    assert [refusal.code for refusal in choice.refusals] == ["not_asked"] and choice.refusals[0].forceable
    assert list(choice.not_asked) == ["p-2"] and "p-2" in choice.refusals[0].message
    # What may be lost is said: the candidate's position against the best that answered.
    assert "after 0/3000100" in choice.assessment and "may exist only on p-2" in choice.assessment


def test_any_1_with_every_standby_answering_promotes_the_most_advanced():
    answers = {"p-1": standby("0/3000000"), "p-2": standby("0/3000100")}
    choice = choose(answers, "p-0", SyncRule("any", 1), requested=None, max_lag_bytes=0)
    assert (choice.candidate, choice.lossless, choice.refusals, choice.gap_bytes) == ("p-2", True, [], 0)
    assert "2 answered (p-2 at 0/3000100, p-1 at 0/3000000), none was missing" in choice.assessment


@pytest.mark.parametrize(
    "lost, k, promoted",
    [(["p-3"], 2, True), (["p-3", "p-4"], 2, False), ([], 2, True), (["p-2", "p-3", "p-4"], 3, False), (["p-3", "p-4"], 3, True)],
)
def test_any_k_tolerates_k_minus_1_standbys_not_asked(lost, k, promoted):
    answers = {name: (Answer(None, "it has no pod") if name in lost else standby("0/5000000")) for name in ("p-1", "p-2", "p-3", "p-4")}
    choice = choose(answers, "p-0", SyncRule("any", k), requested=None, max_lag_bytes=0)
    assert choice.lossless is promoted and bool(choice.refusals) is not promoted


def test_a_position_replayed_but_not_streamed_does_not_count_for_the_candidate_either():
    # The most advanced by replay has streamed nothing since it started: unknown, not counted.
    answers = {"p-1": standby("0/3000000"), "p-2": standby(None, "0/4000000")}
    choice = choose(answers, "p-0", SyncRule("any", 2), requested=None, max_lag_bytes=0)
    assert choice.candidate == "p-1" and choice.lossless is True and "streamed no WAL" in choice.not_asked["p-2"]


def test_after_a_restart_the_replayed_position_is_what_a_standby_holds():
    answers = {"p-1": standby("0/3000000", "0/3000400"), "p-2": standby("0/3000200")}
    choice = choose(answers, "p-0", SyncRule("any", 1), requested=None, max_lag_bytes=0)
    assert choice.candidate == "p-1" and choice.received == {"p-1": 0x3000400, "p-2": 0x3000200}


def test_a_standby_listed_outside_the_cluster_cannot_be_asked():
    answers = {"p-1": standby("0/3000000"), "p-2": standby("0/3000000")}
    choice = choose(answers, "p-0", SyncRule("any", 1), requested=None, max_lag_bytes=0, listed_elsewhere=["dr-site"])
    assert choice.lossless is False and "dr-site" in choice.not_asked
    choice = choose(answers, "p-0", SyncRule("any", 2), requested=None, max_lag_bytes=0, listed_elsewhere=["dr-site"])
    assert choice.lossless is True


@pytest.mark.parametrize(
    "rule, code",
    [(SyncRule("off", 0), "asynchronous"), (SyncRule("off", 0, problem="unreadable"), "asynchronous"), (SyncRule("any", 1, wildcard=True), "wildcard")],
)
def test_no_known_quorum_needs_force(rule, code):
    answers = {"p-1": standby("0/3000000"), "p-2": standby("0/3000000")}
    choice = choose(answers, "p-0", rule, requested=None, max_lag_bytes=0)
    assert [refusal.code for refusal in choice.refusals] == [code] and choice.blocking(force=True) == []
    assert choice.blocking(force=False) == choice.refusals


def test_the_lost_primary_s_checkpoint_is_a_lower_bound_only():
    answers = {"p-1": standby("0/3000000"), "p-2": standby("0/3000000")}
    below = choose(answers, "p-0", SyncRule("any", 1), requested=None, max_lag_bytes=0, primary_floor=0x3000100)
    assert [refusal.code for refusal in below.refusals] == ["below_primary"] and below.lossless is False
    # At or above it proves nothing: with a standby not asked, still refused.
    answers["p-2"] = Answer(None, "it has no pod")
    above = choose(answers, "p-0", SyncRule("any", 1), requested=None, max_lag_bytes=0, primary_floor=0x2000000)
    assert [refusal.code for refusal in above.refusals] == ["not_asked"]


@pytest.mark.parametrize(
    "answers, requested, code",
    [
        ({"p-1": Answer(None, "it has no pod"), "p-2": NOT_ASKED["stopped"]}, None, "no_candidate"),
        ({"p-1": standby("0/3000000"), "p-2": Answer({"running": True, "accepting": True, "in_recovery": False})}, None, "another_primary"),
        ({"p-1": standby("0/3000000"), "p-2": standby("0/3000000")}, "p-9", "not_a_member"),
        ({"p-1": standby("0/3000000"), "p-2": NOT_ASKED["frozen"]}, "p-2", "candidate_unavailable"),
    ],
)
def test_refusals_that_force_cannot_override(answers, requested, code):
    choice = choose(answers, "p-0", SyncRule("any", 1), requested=requested, max_lag_bytes=0)
    assert [refusal.code for refusal in choice.refusals] == [code]
    assert choice.blocking(force=True) == choice.refusals


@pytest.mark.parametrize(
    "settings, expected",
    [
        (['ANY 1 ("p-0", "p-1", "p-2")'], SyncRule("any", 1)),
        (['ANY 2 ("p-0", "p-1", "p-2")', 'ANY 1 ("p-0", "p-1", "p-2")'], SyncRule("any", 1)),
        (["FIRST 2 (*)"], SyncRule("first", 2, wildcard=True)),
        (["p-1, p-2"], SyncRule("first", 1)),
        (["", 'ANY 1 ("p-0", "p-1")'], SyncRule("off", 0)),
    ],
)
def test_sync_rule_is_the_weakest_of_the_settings_seen(settings, expected):
    assert sync_rule(settings) == expected


@pytest.mark.parametrize("settings", [[], ["ANY 0 (a, b)"], ["ANY 1 (a, b"], ["ANY 1 (a, , b)"]])
def test_sync_rule_of_nothing_readable_is_asynchronous(settings):
    rule = sync_rule(settings)
    assert rule.count == 0 and rule.problem


FAILOVER_KILL_POINTS = [
    ("step", "record"),
    ("step", "promote"),
    ("step", "route+repoint"),
    ("step", "release"),
    ("exec", "promote"),
    ("exec", "follow"),
]


@pytest.mark.parametrize("kind, point", FAILOVER_KILL_POINTS, ids=[f"{kind}-{point}" for kind, point in FAILOVER_KILL_POINTS])
def test_killed_at_any_step_then_rerun_finishes_the_failover(cluster, monkeypatch, kind, point):
    from test_switchover import Clock, Killed, kill_at, revive

    clock = Clock()

    def run(**options) -> dict:
        operation = Failover(
            cluster.backend(),
            StatefulSetMembers(statefulset=NAME),
            Timeouts(exec=5, stop=5, promote=5, rejoin=5),
            lease_seconds=10,
            sleep=lambda _s: None,
            now=clock,
            poll_interval=0.01,
        )
        return operation.run(FailoverOptions(**options))

    cluster.write(0x800)
    acknowledged = lose_primary(cluster)
    kill_at(cluster, monkeypatch, kind, point)
    with pytest.raises(Killed):
        run()
    revive(cluster, monkeypatch)
    with pytest.raises(FailoverFailed, match="another operation holds the lease"):
        run()
    clock.advance(120)
    result = run()
    assert not result.get("failed") and result["changed"] is True, result
    new = cluster.record()["data"]["primary"]
    assert new != "postgres-0" and result["new_primary"] == new
    assert cluster.primaries() == [new]
    assert cluster.service_target() == new
    assert cluster.members[new].lsn >= acknowledged
    other = next(name for name in ("postgres-1", "postgres-2") if name != new)
    assert cluster.members[other].upstream == new
    assert cluster.record()["metadata"].get("annotations", {}).get("dbonk8s.io/lease-holder") in (None, "")
    # And the run after that has nothing left to do.
    assert run()["changed"] is False


@pytest.mark.parametrize("lost", [False, True])
def test_a_candidate_that_is_not_a_member_is_refused_whether_the_primary_is_alive_or_not(cluster, lost):
    from test_switchover import mutations

    if lost:
        lose_primary(cluster)
    with pytest.raises(FailoverFailed, match="candidate postgres-9 is not a member of the cluster"):
        failover(cluster, candidate="postgres-9")
    assert mutations(cluster) == [] and cluster.record()["data"]["primary"] == "postgres-0"
    # A member as candidate passes that check: nothing to do while the primary is alive.
    if not lost:
        assert failover(cluster, candidate="postgres-2")["changed"] is False
