# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unplanned failover: the procedure of ``pg_failover`` (see ``docs/switchover.md``).

Steps::

    confirm   the recorded primary is lost: several probes over a window all fail, and no standby
              still streams from it (one answer, or one streaming standby, means it is alive)
    choose    the standby with the most WAL flushed (ties: the lowest ordinal), and whether it can be
              shown to hold every acknowledged commit (``choose``, a pure function)
    lease     as for switchover
    record    the record names the candidate, epoch + 1 (before the promotion: a member that
              starts from now on follows the candidate, the lost primary included)
    promote   ctl.sh promote (PostgreSQL replays everything received first)
    route     Service <name>-rw and labels
    repoint   the other standbys follow the new primary (reload); one that received more than the
              candidate (only possible with force) is stopped, rewound and started
    release   the lease

The lost primary is not touched: when it starts again, start-up rule 3 of the pod scripts makes it
a standby of the recorded primary (pg_rewind first).

Why a promotion loses nothing (the rule ``choose`` applies). With ``ANY k`` (or ``FIRST k``) over
the listed standbys, the lost primary acknowledged a commit only after k of them had flushed it.
The listed standbys are every member the cluster should have (``_membership``: the StatefulSet,
the rendered member list, the names in ``synchronous_standby_names``), not the pods that happen to
exist. If at most k - 1 of them could not be asked (no pod, stopped, frozen, unreachable, or no
known position), one standby that answered flushed every acknowledged commit, so a candidate that
flushed at least as much WAL as every standby that answered holds them all. Anything else is
refused unless ``force``, and the result says what may be lost.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ClusterError, member_ordinal
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._membership import cluster_name, membership_of, rendered_settings
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import (
    LeaseHeld,
    LeaseInfo,
    Operation,
    ProcedureError,
    Record,
    follow,
    lsn,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import lsn_from_int, parse_sync_standby_names

STEPS: list[tuple[str, str]] = [
    ("confirm", "the recorded primary fails every probe over the confirmation window and no standby streams from it"),
    ("choose", "the standby with the most WAL flushed (ties: lowest ordinal); refuse when it cannot be shown to hold every acknowledged commit"),
    ("lease", "take the lease in ConfigMap <name>-primary"),
    ("record", "ConfigMap <name>-primary names the candidate, epoch + 1, before the promotion"),
    ("promote", "ctl.sh promote on the candidate"),
    ("route", "Service <name>-rw selects the candidate; dbonk8s.io/role labels"),
    ("repoint", "the other standbys follow the candidate (reload; stop, pg_rewind and start for one that was ahead)"),
    ("release", "release the lease"),
]

#: Upper bound of one probe during the confirmation, whatever ``exec_timeout`` is: a frozen or
#: cut-off member answers nothing, and must not stretch the confirmation window by much.
PROBE_TIMEOUT = 3.0


class FailoverFailed(ProcedureError):
    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class FailoverOptions:
    candidate: str | None = None
    probes: int = 3
    confirm_seconds: float = 10.0
    max_lag_bytes: int = 0
    force: bool = False


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a failover is not done: ``forceable`` refusals are about what may be lost (``force``
    accepts that); the others would leave no primary or two."""

    code: str
    message: str
    forceable: bool

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one member answered to ``ctl.sh state`` (None: nothing), and why there is no answer."""

    state: dict[str, Any] | None
    why: str = ""


@dataclasses.dataclass(frozen=True)
class SyncRule:
    """The quorum commits waited for: ``ANY k``/``FIRST k``, or ``off`` (k = 0)."""

    method: str
    count: int
    wildcard: bool = False
    problem: str = ""

    def describe(self) -> str:
        return "asynchronous replication" if self.count == 0 else f"{self.method.upper()} {self.count}"


def sync_rule(settings: list[str]) -> SyncRule:
    """The weakest rule among the ``synchronous_standby_names`` values seen: the smallest k, since a
    smaller k lets fewer standbys be missing. Nothing readable means nothing is known (k = 0)."""
    if not settings:
        return SyncRule("off", 0, problem="no synchronous_standby_names could be read (no member answered, no rendered configuration)")
    rules = []
    for setting in settings:
        try:
            method, count, names = parse_sync_standby_names(setting)
        except (TypeError, ValueError) as exc:
            return SyncRule("off", 0, problem=str(exc))
        rules.append(SyncRule(method, count, wildcard="*" in names))
    weakest = min(rules, key=lambda rule: rule.count)
    return dataclasses.replace(weakest, wildcard=any(rule.wildcard for rule in rules))


@dataclasses.dataclass
class Choice:
    candidate: str | None
    #: WAL flushed by each standby that answered with a known position
    received: dict[str, int]
    #: listed standbys that could not be asked, or whose position is not known, and why
    not_asked: dict[str, str]
    #: bytes the candidate lacks compared to the standby that flushed most
    gap_bytes: int
    #: every acknowledged commit is shown to be on the candidate
    lossless: bool
    assessment: str
    refusals: list[Refusal]

    def blocking(self, force: bool) -> list[Refusal]:
        return [refusal for refusal in self.refusals if not (force and refusal.forceable)]


def _position(state: dict[str, Any]) -> int | None:
    """WAL a standby holds, or None when it cannot be known.

    ``receive_lsn`` is what its walreceiver flushed. Without one (nothing streamed since the server
    started) the WAL it has on disk beyond its replay position is unknown. Right after a restart the
    receiver restarts at a segment start, behind what was replayed from its own pg_wal; it holds at
    least that much.
    """
    received = lsn(state.get("receive_lsn"))
    if received is None:
        return None
    return max(received, lsn(state.get("replay_lsn")) or 0)


def _why_not_counted(state: dict[str, Any]) -> str | None:
    if not state.get("running"):
        return "PostgreSQL is not running" + (" (held stopped by an operation)" if state.get("hold") else "")
    if state.get("in_recovery") is not True:
        return "PostgreSQL does not accept connections (starting, stopping or in crash recovery)"
    if _position(state) is None:
        replayed = state.get("replay_lsn") or "nothing"
        return f"it has streamed no WAL since it started, so what it holds is not known (replayed: {replayed})"
    return None


def answers_as_primary(answer: Answer) -> bool:
    state = answer.state
    return bool(state and state.get("running") and state.get("accepting") and state.get("in_recovery") is False)


def _listing(values: dict[str, str]) -> str:
    return "; ".join(f"{name}: {why}" for name, why in values.items())


def choose(
    answers: dict[str, Answer],
    primary: str,
    rule: SyncRule,
    requested: str | None,
    max_lag_bytes: int,
    listed_elsewhere: list[str] | None = None,
    primary_floor: int | None = None,
) -> Choice:
    """Pure: pick the candidate and show that it holds every acknowledged commit, or refuse.

    ``answers`` has every member except the lost primary (those without a pod included);
    ``listed_elsewhere`` the names in ``synchronous_standby_names`` that are no member pod (they
    can confirm commits but cannot be asked); ``primary_floor`` a position the lost primary is known
    to have written (its last checkpoint), a lower bound only.
    """
    received: dict[str, int] = {}
    not_asked: dict[str, str] = {}
    primaries: list[str] = []
    for name, answer in answers.items():
        if name == primary:
            continue
        if answer.state is None:
            not_asked[name] = answer.why or "no answer"
        elif answers_as_primary(answer):
            primaries.append(name)
        elif (why := _why_not_counted(answer.state)) is not None:
            not_asked[name] = why
        else:
            received[name] = _position(answer.state) or 0
    for name in listed_elsewhere or []:
        if name != primary and name != "*":
            not_asked.setdefault(name, "listed in synchronous_standby_names but no pod of the StatefulSet: it cannot be asked")
    if primaries:
        message = f"{', '.join(primaries)} runs as primary beside the lost {primary}: refusing to add another primary (resolve the split brain first)"
        return Choice(None, received, not_asked, 0, False, "", [Refusal("another_primary", message, False)])
    if not received:
        message = "no standby answered with a known position: " + (_listing(not_asked) or "there is no standby")
        return Choice(None, received, not_asked, 0, False, "", [Refusal("no_candidate", message, False)])

    best = max(received.values())
    ranked = sorted(received, key=lambda name: (-received[name], member_ordinal(name)))
    candidate = ranked[0]
    if requested is not None:
        if requested not in received and requested not in not_asked:
            message = f"candidate {requested} is not a member of the cluster ({', '.join(sorted(answers, key=member_ordinal)) or 'none'})"
            return Choice(requested, received, not_asked, 0, False, "", [Refusal("not_a_member", message, False)])
        if requested not in received:
            message = f"candidate {requested} cannot be promoted: {not_asked[requested]}"
            return Choice(requested, received, not_asked, 0, False, "", [Refusal("candidate_unavailable", message, False)])
        candidate = requested
    position = received[candidate]
    gap = best - position
    counted = ", ".join(f"{name} at {lsn_from_int(received[name])}" for name in ranked)
    refusals: list[Refusal] = []
    accept = " (force: true to accept)"

    if rule.count == 0:
        why = rule.problem or "synchronous_standby_names is empty"
        assessment = (
            f"asynchronous replication ({why}): commits the lost primary acknowledged after the last WAL a standby flushed are lost, "
            f"and how many is unknown; the standbys that answered: {counted}"
        )
        refusals.append(Refusal("asynchronous", f"acknowledged commits may be lost: {assessment}{accept}", True))
    elif rule.wildcard:
        assessment = (
            f"synchronous_standby_names lists '*' ({rule.describe()}): any standby, one outside the cluster included, may have confirmed "
            f"commits, so the standbys that hold them cannot be known; the standbys that answered: {counted}"
        )
        refusals.append(Refusal("wildcard", f"acknowledged commits may be lost: {assessment}{accept}", True))
    elif len(not_asked) > rule.count - 1:
        listed = len(received) + len(not_asked)
        assessment = (
            f"{rule.describe()} over {listed} listed standbys: every acknowledged commit was flushed by at least {rule.count} of them, but "
            f"{len(not_asked)} could not be asked ({_listing(not_asked)}), more than the {rule.count - 1} that may be missing; commits "
            f"acknowledged after {lsn_from_int(position)} (the candidate {candidate}'s position; the most any standby that answered has "
            f"is {lsn_from_int(best)}) may exist only on {', '.join(not_asked)}"
        )
        refusals.append(Refusal("not_asked", f"acknowledged commits may be lost: {assessment}{accept}", True))
    else:
        listed = len(received) + len(not_asked)
        missing = f", {len(not_asked)} could not be asked ({_listing(not_asked)})" if not_asked else ", none was missing"
        assessment = (
            f"{rule.describe()} over {listed} listed standbys: every acknowledged commit was flushed by at least {rule.count} of them; "
            f"{len(received)} answered ({counted}){missing}, and at most {rule.count - 1} may be missing, so a standby that answered "
            f"holds every acknowledged commit; {ranked[0]} flushed the most WAL of them ({lsn_from_int(best)})"
        )
    if gap > max_lag_bytes:
        refusals.append(
            Refusal(
                "behind",
                f"candidate {candidate} received {gap} bytes less WAL than {ranked[0]} ({lsn_from_int(position)} < {lsn_from_int(best)}), "
                f"more than max_lag_bytes={max_lag_bytes}; those commits would be lost{accept}",
                True,
            )
        )
    elif gap > 0:
        refusals.append(
            Refusal("behind", f"candidate {candidate} received {gap} bytes less WAL than {ranked[0]}: acknowledged commits may be lost{accept}", True)
        )
    if primary_floor is not None and position < primary_floor:
        refusals.append(
            Refusal(
                "below_primary",
                f"candidate {candidate} flushed WAL up to {lsn_from_int(position)}, before {lsn_from_int(primary_floor)}, which the lost "
                f"primary {primary} is known to have written (its last checkpoint): what lies between is lost{accept}",
                True,
            )
        )
    lossless = not refusals
    return Choice(candidate, received, not_asked, gap, lossless, assessment, refusals)


class Failover(Operation):
    operation = "failover"

    def run(self, options: FailoverOptions, check_mode: bool = False) -> dict[str, Any]:
        started = self.clock()
        result: dict[str, Any] = {"changed": False, "steps": self.steps.done, "notes": self.notes, "plan": self.plan(STEPS)}
        probe_timeout = min(self.timeouts.exec, PROBE_TIMEOUT)
        # The confirmation window starts with this first look, which is its first probe.
        observed_at = self.clock()
        pods, statefulset = self.backend.find_members(self.members)
        name = cluster_name(self.members, pods)
        self.bind(name)
        result["plan"] = self.plan(STEPS)
        rendered = rendered_settings(self.backend, name)
        present = {pod["metadata"]["name"] for pod in pods}
        first = self._ask(membership_of(self.members, statefulset, pods, rendered, []).names, present, probe_timeout)
        reported = [answer.state.get("synchronous_standby_names") for answer in first.values() if answer.state]
        membership = membership_of(self.members, statefulset, pods, rendered, reported)
        members = membership.names
        for member in members:
            first.setdefault(member, Answer(None, "it has no pod"))
        record = self.record()
        primary = record.primary
        result.update(previous_primary=primary, diff={"before": {"primary": primary, "epoch": record.epoch}})
        lease = record.lease
        if lease is not None and lease.holder != self.holder and not lease.expired(self.now()):
            raise FailoverFailed(str(LeaseHeld(lease)), dict(result, lease=lease.describe()))
        if lease is not None and primary is not None and primary == lease.candidate != lease.previous:
            return self._finish(lease, record, result, started, check_mode)
        if options.candidate is not None and options.candidate not in members:
            raise FailoverFailed(f"failover refused: candidate {options.candidate} is not a member of the cluster ({', '.join(members)})", result)
        primaries = [member for member in members if answers_as_primary(first[member])]
        if primaries == [primary] and lease is None:
            # Nothing was lost; a second run after a successful failover lands here too.
            result.update(new_primary=primary, primary=primary, findings=[f"{primary} is running as primary: nothing to fail over"])
            result["diff"]["after"] = result["diff"]["before"]
            result["duration_ms"] = int(round((self.clock() - started) * 1000))
            return result
        others = [member for member in primaries if member != primary]
        if others:
            raise FailoverFailed(
                f"{', '.join(others)} runs as primary but the record names {primary}: refusing to add another primary "
                "(use pg_switchover, or resolve the split brain first)",
                result,
            )
        if primary is None:
            raise FailoverFailed("the record of the primary names no member", result)
        if primary not in members:
            raise FailoverFailed(f"the record names {primary} as primary, which is not a member ({', '.join(members)})", result)

        try:
            probes, answers, floor = self.steps.run("confirm", lambda: self._confirm(primary, first, present, observed_at, options, probe_timeout))
        except ProcedureError as exc:
            raise FailoverFailed(f"failover refused: {exc}", result) from None
        result["probes"] = probes
        rule = sync_rule(membership.sync_settings)
        choice = self.steps.run(
            "choose",
            lambda: choose(answers, primary, rule, options.candidate, options.max_lag_bytes, membership.listed_elsewhere, floor),
        )
        result.update(
            candidate=choice.candidate,
            received={name: lsn_from_int(value) for name, value in choice.received.items()},
            not_asked=choice.not_asked,
            gap_bytes=choice.gap_bytes,
            lossless=choice.lossless,
            loss_assessment=choice.assessment,
            refusals=[refusal.describe() for refusal in choice.refusals],
            findings=[refusal.message for refusal in choice.refusals],
        )
        if floor is not None:
            result["primary_floor_lsn"] = lsn_from_int(floor)
        blocking = choice.blocking(options.force)
        if blocking:
            raise FailoverFailed("failover refused: " + "; ".join(refusal.message for refusal in blocking), result)
        if choice.refusals:
            self.notes.append("forced: " + "; ".join(refusal.message for refusal in choice.refusals))
        new = choice.candidate
        if new is None:
            raise FailoverFailed("no candidate", result)
        result["diff"]["after"] = {"primary": new, "epoch": record.epoch + 1}
        if check_mode:
            result.update(changed=True, new_primary=new, primary=new)
            return result

        try:
            self.steps.run("lease", lambda: self.take_lease(primary, new, record.epoch))
        except LeaseHeld as exc:
            raise FailoverFailed(str(exc), dict(result, lease=exc.lease.describe())) from None
        epoch = record.epoch + 1
        try:
            result["changed"] = True
            self.steps.run("record", lambda: self.lease.update(step="record", primary=new, epoch=epoch), budget=self.timeouts.promote)
            promoted = self.steps.run("promote", lambda: self.promote(new, epoch), budget=self.timeouts.promote)
            result.update(new_primary=new, primary=new, epoch=epoch, timeline=promoted.get("timeline"), promote_lsn=lsn_from_int(choice.received[new]))
            rest = [name for name in members if name not in (primary, new)]
            self.steps.parallel(
                [("route", lambda: self.route(new)), ("repoint", lambda: self._repoint(rest, new, epoch, choice.received[new], choice.received))],
                budget=self.timeouts.rejoin,
            )
            self.steps.run("release", self.release_lease)
        except ClusterError as exc:
            if self.lease is not None and self.lease.info is not None:
                try:
                    self.lease.abandon()
                except ClusterError:
                    pass
            raise FailoverFailed(f"failover stopped at step {self.steps.done[-1]['name']}: {exc}; run the module again to finish", result) from None
        self.notes.append(f"{primary} rejoins as a standby of {new} when it starts again (start-up follows the record, with pg_rewind)")
        result["duration_ms"] = int(round((self.clock() - started) * 1000))
        return result

    def _finish(self, lease: LeaseInfo, record: Record, result: dict[str, Any], started: float, check_mode: bool) -> dict[str, Any]:
        """An interrupted run (its lease expired) had written the record: the recorded member was
        chosen as the one holding every acknowledged commit, so the rerun finishes that run instead
        of probing the recorded member as if it were the lost primary."""
        try:
            converged = self.finish_interrupted(lease, record, check_mode)
            if not check_mode:
                self.release_lease()
        except ClusterError as exc:
            raise FailoverFailed(f"could not finish the interrupted {lease.operation}: {exc}", result) from None
        primary = record.primary
        result.update(
            changed=True,
            previous_primary=lease.previous,
            new_primary=primary,
            primary=primary,
            epoch=record.epoch,
            findings=[f"the interrupted {lease.operation} ({lease.previous} -> {primary}, step {lease.step}) had written the record: finishing it"],
        )
        if not check_mode:
            result["converged"] = converged
        result["diff"] = {"before": {"primary": lease.previous, "epoch": lease.epoch}, "after": {"primary": primary, "epoch": record.epoch}}
        result["duration_ms"] = int(round((self.clock() - started) * 1000))
        return result

    def _confirm(
        self,
        primary: str,
        first: dict[str, Answer],
        present: set[str],
        started_at: float,
        options: FailoverOptions,
        probe_timeout: float,
    ) -> tuple[list[dict[str, Any]], dict[str, Answer], int | None]:
        """Every probe must fail; a standby streaming from the primary also proves it alive.

        ``first`` is the run's first look at every member, the first probe. The others ask every
        member at once at even steps over the window, each probe ending by the next one's start,
        the last within ``probe_timeout``, so that members that answer nothing (frozen, cut off)
        stretch the window by ``probe_timeout`` at most. Returns the probes, the other members'
        answers of the last probe (what ``choose`` judges) and the lost primary's last checkpoint
        when its pod still answers (a lower bound of the WAL it wrote).
        """
        names = [name for name in first if name != primary]
        probes: list[dict[str, Any]] = []
        floor: int | None = None
        interval = options.confirm_seconds / (options.probes - 1) if options.probes > 1 else 0.0
        answers = dict(first)
        moment = started_at
        for attempt in range(options.probes):
            if attempt:
                delay = started_at + attempt * interval - self.clock()
                if delay > 0:
                    self.sleep(delay)
                moment = self.clock()
                limit = probe_timeout
                if attempt < options.probes - 1:
                    limit = min(probe_timeout, max(1.0, started_at + (attempt + 1) * interval - moment))
                answers = self._ask([primary] + names, present, limit)
            lost = answers.pop(primary)
            state = lost.state
            if state is not None and state.get("hold"):
                raise ProcedureError(f"{primary} is held by an operation (ctl.sh hold): not a failure; finish or undo that operation")
            alive = answers_as_primary(lost)
            what = "answers as primary" if alive else (lost.why if state is None else "PostgreSQL not running")
            probes.append({"at_ms": int(round((moment - started_at) * 1000)), "alive": alive, "result": what})
            if alive:
                raise ProcedureError(f"the primary {primary} is alive (probe {attempt + 1}: {what}); no failover")
            if state is not None and not state.get("running"):
                checkpoint = lsn(((state.get("controldata") or {}).get("checkpoint_lsn")) or None)
                if checkpoint is not None:
                    floor = max(floor or 0, checkpoint)
            streaming = [
                name
                for name, answer in answers.items()
                if answer.state
                and answer.state.get("wal_receiver") == "streaming"
                and (answer.state.get("primary_conninfo_host") or "").split(".")[0] == primary
            ]
            if streaming:
                raise ProcedureError(f"the primary {primary} is alive: {', '.join(streaming)} still stream(s) from it; no failover")
        return probes, answers, floor

    def _ask(self, names: list[str], present: set[str], timeout: float) -> dict[str, Answer]:
        """``ctl.sh state`` of every member in ``names`` at once, each within ``timeout``; a member
        without a pod (when the run started) is not asked."""
        asked = [name for name in names if name in present]
        replies: list[tuple[dict[str, Any] | None, str]] = []
        if asked:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(asked)) as pool:
                replies = list(pool.map(lambda name: self.ctl.ask(name, timeout), asked))
        answers = dict(zip(asked, (Answer(state, why) for state, why in replies)))
        return {name: answers.get(name, Answer(None, "it has no pod")) for name in names}

    def _repoint(self, standbys: list[str], primary: str, epoch: int, fork: int, received: dict[str, int]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name in standbys:
            try:
                if received.get(name, 0) > fork:
                    # It holds WAL the new timeline does not: a reload cannot fix that.
                    self.ctl(name, "stop", int(self.timeouts.stop), timeout=self.timeouts.stop + self.timeouts.exec)
                    results[name] = self.rejoin(name, primary, epoch)
                else:
                    results[name] = follow(self.ctl, name, primary, epoch, self.timeouts.exec)
            except ClusterError as exc:
                self.notes.append(f"{name} could not be repointed ({exc}); it follows {primary} when it starts")
                results[name] = {"changed": False, "skipped": str(exc)}
        return results
