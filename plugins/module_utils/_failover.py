# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unplanned failover: the procedure of ``pg_failover`` (see ``docs/switchover.md``).

Steps::

    confirm   the recorded primary is lost: several probes over a window all fail, and no standby
              still streams from it (one answer, or one streaming standby, means it is alive)
    choose    the standby with the most WAL received (ties: the lowest ordinal; all members are
              synchronous candidates with the collection's ANY n setting); the loss assessment
    lease     as for switchover
    record    the record names the candidate, epoch + 1 (before the promotion: a member that
              starts from now on follows the candidate, the lost primary included)
    promote   ctl.sh promote (PostgreSQL replays everything received first)
    route     Service <name>-rw and labels
    repoint   the other standbys follow the new primary (reload); one that received more than the
              candidate (only possible with force) is stopped, rewound and started
    release   the lease

The lost primary is not touched: when it starts again, start-up rule 3 of the pod scripts makes it
a standby of the recorded primary (pg_rewind first). With synchronous replication (ANY k), a commit
was acknowledged only after k standbys flushed it; so while fewer than k standbys are unreachable,
one reachable standby holds every acknowledged commit, and the one with the most WAL received holds
them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ClusterError, member_ordinal
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import (
    LeaseHeld,
    LeaseInfo,
    Operation,
    ProcedureError,
    Record,
    follow,
    lsn,
    required_sync_count,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import lsn_from_int

STEPS: list[tuple[str, str]] = [
    ("confirm", "the recorded primary fails every probe over the confirmation window and no standby streams from it"),
    ("choose", "the standby with the most WAL received (ties: lowest ordinal); refuse when it may lack acknowledged commits"),
    ("lease", "take the lease in ConfigMap <name>-primary"),
    ("record", "ConfigMap <name>-primary names the candidate, epoch + 1, before the promotion"),
    ("promote", "ctl.sh promote on the candidate"),
    ("route", "Service <name>-rw selects the candidate; dbonk8s.io/role labels"),
    ("repoint", "the other standbys follow the candidate (reload; stop, pg_rewind and start for one that was ahead)"),
    ("release", "release the lease"),
]


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


@dataclasses.dataclass
class Choice:
    candidate: str | None
    received: dict[str, int]
    #: bytes the candidate lacks compared to the standby that received most
    gap_bytes: int
    #: every acknowledged commit is on the candidate (synchronous replication, enough standbys reachable)
    lossless: bool
    assessment: str
    refusals: list[str]


def choose(states: dict[str, dict[str, Any] | None], primary: str, sync_required: int, requested: str | None, max_lag_bytes: int) -> Choice:
    """Pure: pick the candidate from ``ctl.sh state`` of every member and assess what may be lost."""
    received: dict[str, int] = {}
    unreachable = []
    for name, state in states.items():
        if name == primary:
            continue
        if not state or not state.get("running") or state.get("in_recovery") is not True:
            unreachable.append(name)
            continue
        position = max(lsn(state.get("receive_lsn")) or 0, lsn(state.get("replay_lsn")) or 0)
        received[name] = position
    refusals: list[str] = []
    if not received:
        down = f" ({', '.join(unreachable)} not running)" if unreachable else ""
        return Choice(None, {}, 0, False, "no standby is running", [f"no running standby to promote{down}"])
    best = max(received.values())
    ranked = sorted(received, key=lambda name: (-received[name], member_ordinal(name)))
    candidate = ranked[0]
    if requested is not None:
        if requested not in received:
            refusals.append(f"candidate {requested} is not a running standby")
            return Choice(requested, received, 0, False, "", refusals)
        candidate = requested
    gap = best - received[candidate]
    if sync_required > 0 and len(unreachable) < sync_required:
        lossless = gap == 0
        assessment = (
            f"synchronous replication (ANY {sync_required}): every acknowledged commit is on at least {sync_required} standby(s), "
            f"and {len(unreachable)} standby(s) are unreachable, so the standby with the most WAL ({ranked[0]}, {lsn_from_int(best)}) holds them all"
        )
    elif sync_required > 0:
        lossless = False
        assessment = (
            f"synchronous replication (ANY {sync_required}) but {len(unreachable)} standby(s) are unreachable ({', '.join(unreachable)}): "
            "acknowledged commits may exist only there"
        )
    else:
        lossless = False
        assessment = (
            "asynchronous replication: commits acknowledged by the lost primary after the last WAL a standby received are lost, "
            "and their amount is unknown"
        )
    if gap > max_lag_bytes:
        refusals.append(
            f"candidate {candidate} received {gap} bytes less WAL than {ranked[0]} ({lsn_from_int(received[candidate])} < {lsn_from_int(best)}), "
            f"more than max_lag_bytes={max_lag_bytes}; those commits would be lost (force: true to accept)"
        )
    if not lossless and gap <= max_lag_bytes:
        refusals.append(f"acknowledged commits may be lost: {assessment} (force: true to accept)")
    return Choice(candidate, received, gap, lossless, assessment, refusals)


class Failover(Operation):
    operation = "failover"

    def run(self, options: FailoverOptions, check_mode: bool = False) -> dict[str, Any]:
        started = self.clock()
        plan = [{"step": name, "description": text} for name, text in STEPS]
        result: dict[str, Any] = {"changed": False, "steps": self.steps.done, "notes": self.notes, "plan": plan}
        state = self.observe()
        record = self.record()
        primary = record.primary
        result.update(previous_primary=primary, diff={"before": {"primary": primary, "epoch": record.epoch}})
        lease = record.lease
        if lease is not None and lease.holder != self.holder and not lease.expired(self.now()):
            raise FailoverFailed(str(LeaseHeld(lease)), dict(result, lease=lease.describe()))
        if lease is not None and primary is not None and primary == lease.candidate != lease.previous:
            return self._finish(lease, record, result, started, check_mode)
        cluster = state["cluster"]
        if cluster["primaries"] == [primary] and lease is None:
            # Nothing was lost; a second run after a successful failover lands here too.
            result.update(new_primary=primary, primary=primary, findings=[f"{primary} is running as primary: nothing to fail over"])
            result["diff"]["after"] = result["diff"]["before"]
            result["duration_ms"] = int(round((self.clock() - started) * 1000))
            return result
        others = [name for name in cluster["primaries"] if name != primary]
        if others:
            raise FailoverFailed(
                f"{', '.join(others)} runs as primary but the record names {primary}: refusing to add another primary "
                "(use pg_switchover, or resolve the split brain first)",
                result,
            )
        if primary is None:
            raise FailoverFailed("the record of the primary names no member", result)

        try:
            probes = self.steps.run("confirm", lambda: self._confirm(primary, options))
        except ProcedureError as exc:
            raise FailoverFailed(f"failover refused: {exc}", result) from None
        result["probes"] = probes
        names = self.member_names()
        states = self.states([name for name in names if name != primary])
        sync_required = self._sync_required(state, primary)
        choice = self.steps.run("choose", lambda: choose(states, primary, sync_required, options.candidate, options.max_lag_bytes))
        result.update(
            candidate=choice.candidate,
            received={name: lsn_from_int(value) for name, value in choice.received.items()},
            gap_bytes=choice.gap_bytes,
            lossless=choice.lossless,
            loss_assessment=choice.assessment,
            findings=choice.refusals,
        )
        blocking = [reason for reason in choice.refusals if not options.force or "not a running standby" in reason or "no running standby" in reason]
        if blocking:
            raise FailoverFailed("failover refused: " + "; ".join(blocking), result)
        if choice.refusals:
            self.notes.append("forced: " + "; ".join(choice.refusals))
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
            rest = [name for name in names if name not in (primary, new)]
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

    def _confirm(self, primary: str, options: FailoverOptions) -> list[dict[str, Any]]:
        """Every probe must fail; a standby streaming from the primary also proves it alive."""
        probes = []
        interval = options.confirm_seconds / max(1, options.probes - 1) if options.probes > 1 else 0.0
        for attempt in range(options.probes):
            if attempt:
                self.sleep(interval)
            moment = self.clock()
            try:
                state = self.ctl(primary, "state", timeout=self.timeouts.exec)
                alive = bool(state.get("running") and state.get("accepting") and state.get("in_recovery") is False)
                what = "answers as primary" if alive else ("held by an operation" if state.get("hold") else "PostgreSQL not running")
                if state.get("hold"):
                    raise ProcedureError(f"{primary} is held by an operation (ctl.sh hold): not a failure; finish or undo that operation")
            except ProcedureError:
                raise
            except ClusterError as exc:
                alive, what = False, str(exc)
            probes.append({"at_ms": int(round((moment - self.steps.marks.get("confirm:start", moment)) * 1000)), "alive": alive, "result": what})
            if alive:
                raise ProcedureError(f"the primary {primary} is alive (probe {attempt + 1}: {what}); no failover")
            standbys = self.states([name for name in self.member_names() if name != primary])
            streaming = [
                name
                for name, state in standbys.items()
                if state and state.get("wal_receiver") == "streaming" and (state.get("primary_conninfo_host") or "").split(".")[0] == primary
            ]
            if streaming:
                raise ProcedureError(f"the primary {primary} is alive: {', '.join(streaming)} still stream(s) from it; no failover")
        return probes

    @staticmethod
    def _sync_required(state: dict[str, Any], primary: str) -> int:
        settings = [
            member["synchronous_standby_names"]
            for member in state["members"]
            if member["name"] != primary and member.get("synchronous_standby_names") is not None
        ]
        return max((required_sync_count(setting) for setting in settings), default=0)

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
