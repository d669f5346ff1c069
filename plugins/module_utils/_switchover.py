# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planned switchover: the procedure of ``pg_switchover`` (see ``docs/switchover.md``).

Steps, in order (the names are those of the result's ``steps``)::

    preflight   exactly one primary, the candidate streaming and within the lag limit, no live lease
    lease       take the lease (optimistic concurrency on ConfigMap <name>-primary)
    checkpoint  CHECKPOINT on the old primary, so that its shutdown checkpoint is short
    stop        ctl.sh stop on the old primary: hold, fast shutdown; its walsenders send the
                standbys everything up to the shutdown checkpoint before it exits
    verify      the candidate replayed past the shutdown checkpoint; if not: release the old
                primary (it comes back as primary) and stop: nothing else was changed
    record      the record names the candidate, epoch + 1 (point of no return)
    promote     the candidate's ctl.sh promote, armed before the stop, is told to go
    route       Service <name>-rw and the dbonk8s.io/role labels        } at once, with promote:
    repoint     ctl.sh follow on the other standbys (reload, no         } they follow the candidate
                restart)                                                 } as cascading standbys
    rejoin      ctl.sh follow + release on the old primary: it starts as a standby
    wait        the synchronous standbys (and the old primary) stream from the new primary
    release     the lease

The record is written *before* the promotion (the brief's order was the other way round): from the
moment the candidate is known to hold every commit, the record names it, so a member that restarts
during the rest of the procedure (the old primary included) starts as its standby, and there is no
moment at which a restart could produce a second primary. A rerun after an interruption finds the
expired lease and, through ``Operation.converge``, brings the cluster to whatever the record says:
the old primary released (before the record step) or the candidate promoted (after it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ClusterError, member_ordinal
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import (
    Armed,
    Background,
    LeaseHeld,
    Operation,
    ProcedureError,
    ROLE_LABEL,
    lsn,
)

STEPS: list[tuple[str, str]] = [
    ("preflight", "exactly one primary; the candidate is a streaming standby within max_lag_bytes; no operation holds the lease"),
    ("lease", "take the lease in ConfigMap <name>-primary (resourceVersion), recording the operation's progress"),
    ("checkpoint", "CHECKPOINT on the old primary, so that the shutdown checkpoint is short"),
    ("stop", "ctl.sh stop on the old primary: hold, fast shutdown; the standbys receive WAL up to the shutdown checkpoint"),
    ("verify", "the candidate replayed past the old primary's shutdown checkpoint, else the old primary is released and nothing changes"),
    ("record", "ConfigMap <name>-primary names the candidate, epoch + 1 (from here on the switchover rolls forward)"),
    ("promote", "ctl.sh promote on the candidate (new timeline), armed before the stop and told to go now"),
    ("route", "Service <name>-rw selects the candidate; dbonk8s.io/role labels (during the promotion)"),
    ("repoint", "ctl.sh follow on the other standbys during the promotion: new primary_conninfo and reload, no restart"),
    ("rejoin", "ctl.sh follow on the old primary (pg_rewind only when needed), then release: it starts as a standby"),
    ("wait", "the configured synchronous standbys stream from the new primary (with wait_for_rejoin, the old primary too)"),
    ("release", "release the lease"),
]


class SwitchoverFailed(ProcedureError):
    """The switchover stopped; ``result`` tells how far it got and what state it left."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class Preflight:
    primary: str | None
    candidate: str | None
    epoch: int
    #: Every observation worth telling (blocking or not).
    findings: list[str]
    #: The findings that forbid the switchover.
    refusals: list[str]
    #: The candidate already is the only primary.
    done: bool = False


def _member(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((member for member in state["members"] if member["name"] == name), None)


def _eligible(member: dict[str, Any], max_lag_bytes: int) -> list[str]:
    """Why ``member`` cannot be the candidate (empty when it can)."""
    name = member["name"]
    if member["role"] == "primary":
        return [f"candidate {name} is a primary, not a standby"]
    if member["role"] != "standby":
        return [f"candidate {name} is not running ({member['state'] or member['role']}: {member['error'] or 'no answer'})"]
    why = []
    if member["replication_state"] != "streaming":
        why.append(
            f"candidate {name} is not streaming from the primary (wal receiver: {member['wal_receiver_status'] or 'not running'})"
        )
    if member["replay_paused"]:
        why.append(f"replay is paused on candidate {name} (pg_wal_replay_pause()); resume it with SELECT pg_wal_replay_resume()")
    lag = member["replay_lag_bytes"]
    if lag is None:
        why.append(f"the replay lag of candidate {name} cannot be measured")
    elif lag > max_lag_bytes:
        why.append(f"candidate {name} is {lag} bytes behind the primary (replay), more than max_lag_bytes={max_lag_bytes}")
    return why


def choose_candidate(state: dict[str, Any], max_lag_bytes: int) -> tuple[str | None, list[str]]:
    """The synchronous standby with the least replay lag (a streaming one when none is synchronous)."""
    standbys = [member for member in state["members"] if member["role"] == "standby"]
    eligible = [member for member in standbys if not _eligible(member, max_lag_bytes)]
    if not eligible:
        reasons = [reason for member in standbys for reason in _eligible(member, max_lag_bytes)]
        return None, ["no standby can be the candidate" + (": " + "; ".join(reasons) if reasons else " (there is no running standby)")]
    eligible.sort(key=lambda member: (member["sync_state"] not in ("sync", "quorum"), member["replay_lag_bytes"], member_ordinal(member["name"])))
    return eligible[0]["name"], []


def preflight(state: dict[str, Any], record_primary: str | None, record_epoch: int, candidate: str | None, max_lag_bytes: int) -> Preflight:
    """Pure: what the observed state allows (unit-tested with recorded states)."""
    cluster = state["cluster"]
    findings: list[str] = []
    refusals: list[str] = []
    names = [member["name"] for member in state["members"]]
    primaries = cluster["primaries"]
    primary = primaries[0] if len(primaries) == 1 else None
    if not primaries:
        refusals.append("no primary: no member is out of recovery (a switchover needs a running primary; see pg_failover)")
    elif len(primaries) > 1:
        refusals.append(f"{len(primaries)} primaries ({', '.join(primaries)}): split brain; a switchover would make it worse, resolve it first")
    if candidate is not None and candidate not in names:
        refusals.append(f"candidate {candidate} is not a member of the cluster ({', '.join(names)})")
        candidate = None
    elif candidate is not None and primary is not None and candidate == primary:
        return Preflight(primary, candidate, record_epoch, findings=[f"{candidate} already is the primary"], refusals=[], done=True)
    elif candidate is not None:
        member = _member(state, candidate)
        refusals += _eligible(member, max_lag_bytes) if member else [f"candidate {candidate} was not observed"]
    elif primary is not None:
        candidate, why = choose_candidate(state, max_lag_bytes)
        refusals += why
    if primary is not None:
        primary_member = _member(state, primary) or {}
        if record_primary != primary:
            findings.append(f"the record names {record_primary} but {primary} is the primary; the switchover rewrites the record")
        for member in state["members"]:
            if member["name"] in (primary, candidate):
                continue
            if member["role"] != "standby":
                findings.append(f"{member['name']} is {member['role']} ({member['state']}); it follows the new primary when it starts")
            elif member["replication_state"] != "streaming":
                findings.append(f"{member['name']} is not streaming from {primary}")
        if candidate is not None:
            candidate_member = _member(state, candidate)
            if candidate_member and candidate_member["timeline"] not in (None, primary_member.get("timeline")):
                refusals.append(f"candidate {candidate} is on timeline {candidate_member['timeline']}, the primary on {primary_member.get('timeline')}")
    return Preflight(primary, candidate, record_epoch, findings=findings + refusals, refusals=refusals)


@dataclasses.dataclass
class SwitchoverOptions:
    candidate: str | None = None
    max_lag_bytes: int = 16 * 1024 * 1024
    wait_for_rejoin: bool = True


class Switchover(Operation):
    operation = "switchover"

    def run(self, options: SwitchoverOptions, check_mode: bool = False) -> dict[str, Any]:
        started = self.clock()
        result: dict[str, Any] = {"changed": False, "steps": self.steps.done, "notes": self.notes}
        converged: list[str] = []

        state = self.observe()
        record = self.record()
        result["previous_primary"] = record.primary
        result["diff"] = {"before": {"primary": record.primary, "epoch": record.epoch}}
        lease = record.lease
        if lease is not None and lease.holder != self.holder and not lease.expired(self.now()):
            raise SwitchoverFailed(str(LeaseHeld(lease)), dict(result, lease=lease.describe()))
        if lease is not None:
            # An interrupted operation: finish or undo it first, as the record says.
            try:
                converged = self.finish_interrupted(lease, record, check_mode)
            except ClusterError as exc:
                raise SwitchoverFailed(f"could not finish the interrupted {lease.operation}: {exc}", result) from None
            if not check_mode:
                result["changed"] = True
                result["converged"] = converged
                state = self._settle(options.candidate)
                record = self.record()

        check = self.steps.run("preflight", lambda: preflight(state, record.primary, record.epoch, options.candidate, options.max_lag_bytes))
        result.update(
            previous_primary=check.primary,
            candidate=check.candidate,
            findings=check.findings,
            plan=self.plan(STEPS),
        )
        if check.done:
            primary = check.candidate or ""
            drift = self._drift(state, record.primary, primary)
            if drift and not check_mode:
                # A primary that the record does not name is one restart away from being demoted.
                if self.lease is None:
                    self.steps.run("lease", lambda: self.take_lease(primary, primary, record.epoch))
                if record.primary != primary:
                    record = self.steps.run("record", lambda: self.lease.update(step="record", primary=primary, epoch=record.epoch + 1))
                result["converged"] = converged + self.steps.run("converge", lambda: self.converge(record), budget=self.timeouts.promote)
                result["epoch"] = record.epoch
            self.release_lease()
            result.update(
                changed=result["changed"] or bool(drift),
                primary=primary,
                new_primary=primary,
                previous_primary=primary,
                findings=check.findings + drift,
            )
            result["diff"]["after"] = {"primary": primary, "epoch": record.epoch + (1 if check_mode and record.primary != primary else 0)}
            result["duration_ms"] = int(round((self.clock() - started) * 1000))
            return result
        if check.refusals:
            self.release_lease()
            raise SwitchoverFailed("switchover refused: " + "; ".join(check.refusals), result)

        old, new, epoch = check.primary, check.candidate, record.epoch
        if old is None or new is None:
            raise SwitchoverFailed("switchover refused: no primary or no candidate", result)
        result["diff"]["after"] = {"primary": new, "epoch": epoch + 1}
        if check_mode:
            result.update(changed=True, new_primary=new, primary=new)
            return result

        try:
            self.steps.run("lease", lambda: self.take_lease(old, new, epoch))
        except LeaseHeld as exc:
            raise SwitchoverFailed(str(exc), dict(result, lease=exc.lease.describe())) from None
        try:
            self._switch(old, new, epoch, options, result)
        except SwitchoverFailed:
            self._abandon_lease()
            raise
        except ClusterError as exc:
            self._abandon_lease()
            raise SwitchoverFailed(
                f"switchover stopped at step {self.steps.done[-1]['name'] if self.steps.done else '?'}: {exc}; "
                "the record names the candidate: run the module again to finish",
                result,
            ) from None
        result["duration_ms"] = int(round((self.clock() - started) * 1000))
        return result

    def _abandon_lease(self) -> None:
        """Leave the progress in the lease, expired, so that a rerun finishes or undoes at once."""
        if self.lease is not None and self.lease.info is not None:
            try:
                self.lease.abandon()
            except ClusterError as exc:
                self.notes.append(f"could not mark the lease as abandoned ({exc}); a rerun waits until it expires")

    def _drift(self, state: dict[str, Any], recorded: str | None, primary: str) -> list[str]:
        """What does not point at ``primary`` although it is the only primary."""
        drift = []
        if recorded != primary:
            drift.append(f"the record names {recorded}, not the primary {primary}")
        target = state["cluster"]["rw_service_target"]
        if target != primary:
            drift.append(f"Service {state['cluster']['name']}-rw selects {target}, not the primary {primary}")
        for pod in self.backend.member_pods(self.members):
            name = pod["metadata"]["name"]
            label = (pod["metadata"].get("labels") or {}).get(ROLE_LABEL)
            want = "primary" if name == primary else "replica"
            if label != want:
                drift.append(f"{name} is labelled {ROLE_LABEL}={label}, not {want}")
        return drift

    def _switch(self, old: str, new: str, epoch: int, options: SwitchoverOptions, result: dict[str, Any]) -> None:
        timeouts = self.timeouts
        result["changed"] = True
        others = [name for name in self.member_names() if name not in (old, new)]
        # The candidate's promotion and the other standbys' repoint are armed before the stop
        # (checks done, sessions open) and told to go once the record names the candidate: no exec
        # round trip stands between the record and the promotion.
        told_within = int(timeouts.stop + timeouts.replay + timeouts.promote + 2 * timeouts.exec)
        armed_promote = self.arm(new, "promote", [epoch + 1, int(timeouts.promote)], told_within, timeouts.promote)
        armed_follow = [self.arm(name, "follow", [new, epoch + 1, 0], told_within, timeouts.exec) for name in others]
        armed = [armed_promote] + armed_follow
        try:
            self.steps.run("checkpoint", lambda: self.ctl(old, "checkpoint", timeout=timeouts.stop), budget=timeouts.stop)
            # The candidate starts waiting for the end of the old primary's WAL now, so that its
            # wait and the shutdown overlap; the verify step then checks its answer exactly.
            replay_wait = timeouts.stop + timeouts.replay
            watcher = Background(lambda: self.ctl(new, "replayed", int(replay_wait), timeout=replay_wait + timeouts.exec))
            # The stop's lease covers the verify step too: no lease write between them.
            stopped = self.steps.run(
                "stop",
                lambda: self.ctl(old, "stop", int(timeouts.stop), timeout=timeouts.stop + timeouts.exec),
                budget=replay_wait + timeouts.exec,
            )
            shutdown_lsn = stopped.get("checkpoint_lsn")
            if not shutdown_lsn:
                raise ProcedureError(f"ctl.sh stop on {old} reported no shutdown checkpoint")
            result["switchover_lsn"] = shutdown_lsn
            self.steps.run("verify", lambda: self._verify(new, shutdown_lsn, watcher), renew=False)
        except ClusterError as exc:
            Armed.cancel_all(armed)
            self._restore(old, exc, result)
        # Point of no return: the candidate holds everything the old primary ever acknowledged.
        try:
            self.steps.run(
                "record", lambda: self.lease.update(step="record", budget=timeouts.promote, primary=new, epoch=epoch + 1), renew=False
            )
        except ClusterError as exc:
            # The write may have reached the API before the answer was lost: the record decides.
            try:
                written = self.record()
            except ClusterError:
                written = None
            if written is None or written.primary != new or written.epoch != epoch + 1:
                Armed.cancel_all(armed)
                self._restore(old, exc, result)
        # Writes resume once a synchronous standby streams from the new primary: the other standbys
        # follow the candidate during its promotion (as cascading standbys, they cross to the new
        # timeline on the same connection), and the Service follows at once too.
        for command in armed:
            command.go()
        promoted, _routed, _repointed = self.steps.parallel(
            [
                ("promote", lambda: armed_promote.outcome(self.timeouts.promote + self.timeouts.exec, lambda: self.promote(new, epoch + 1), self.notes)),
                ("route", lambda: self.route(new)),
                ("repoint", lambda: self._repoint_armed(armed_follow, new, epoch + 1)),
            ],
            budget=timeouts.promote + timeouts.exec,
        )
        result.update(timeline=promoted.get("timeline"), epoch=epoch + 1, new_primary=new, primary=new)
        result["write_unavailable_ms"] = self.steps.between_ms("stop:start", "promote:end")
        result["rejoin"] = self.steps.run("rejoin", lambda: self.rejoin(old, new, epoch + 1), budget=timeouts.rejoin)
        # The synchronous standbys are always waited for: until they are back, commits wait.
        rejoined = [old] if options.wait_for_rejoin else []
        self.steps.run("wait", lambda: self.wait_sync(new, rejoined, timeouts.rejoin), budget=timeouts.rejoin)
        result["sync_back_ms"] = self.steps.between_ms("promote:end", "wait:end")
        self.steps.run("release", self.release_lease)

    def _settle(self, candidate: str | None, timeout: float = 30.0) -> dict[str, Any]:
        """The state once the standbys that ``converge`` repointed or released stream again (their
        walreceivers retry every ``wal_retrieve_retry_interval``): the given candidate, or any
        standby. After ``timeout``, the last state as it is, for the preflight to judge."""
        last: dict[str, Any] = {}

        def streaming() -> dict[str, Any] | None:
            state = last["state"] = self.observe()
            if candidate is None:
                standbys = [member for member in state["members"] if member["role"] == "standby"]
                return state if not standbys or state["cluster"]["streaming_standbys"] > 0 else None
            member = _member(state, candidate)
            return state if member is None or member["role"] != "standby" or member["replication_state"] == "streaming" else None

        try:
            return self.poll("the standbys to stream again", timeout, streaming)
        except ProcedureError:
            return last["state"]

    def _repoint_armed(self, armed: list[Armed], primary: str, epoch: int) -> dict[str, Any]:
        """The armed repoints' answers; a standby whose armed command failed is repointed anew."""
        answers: dict[str, Any] = {}
        retry = []
        for command in armed:
            outcome = command.result(self.timeouts.exec)
            if isinstance(outcome, dict):
                answers[command.pod] = outcome
            else:
                retry.append(command.pod)
        if retry:
            answers.update(self.repoint(retry, primary, epoch))
        return answers

    def _verify(self, candidate: str, shutdown_lsn: str, watcher: Background) -> dict[str, Any]:
        target = lsn(shutdown_lsn) or 0
        early = watcher.result(self.timeouts.replay + self.timeouts.exec)
        # replay_lsn is the end of the last replayed record: past the checkpoint record's start
        # means the shutdown checkpoint itself was replayed.
        if isinstance(early, dict) and (lsn(early.get("replay_lsn")) or 0) > target:
            return early
        try:
            return self.ctl(candidate, "replayed", int(self.timeouts.replay), shutdown_lsn, timeout=self.timeouts.replay + self.timeouts.exec)
        except ClusterError as exc:
            raise ProcedureError(f"candidate {candidate} did not replay the old primary's shutdown checkpoint {shutdown_lsn}: {exc}") from None

    def _restore(self, old: str, cause: Exception, result: dict[str, Any]) -> None:
        """Before the record step: bring the old primary back as it was, then fail."""
        try:
            self.ctl(old, "release")
            self.wait_primary(old, self.timeouts.stop + self.timeouts.promote)
        except ClusterError as exc:
            result["rolled_back"] = False
            raise SwitchoverFailed(
                f"switchover aborted ({cause}) and the old primary {old} could not be restored ({exc}); "
                "it is held stopped: run the module again to restore it",
                result,
            ) from None
        result["rolled_back"] = True
        self.release_lease()
        raise SwitchoverFailed(f"switchover aborted, {old} is the primary again, nothing else changed: {cause}", result)
