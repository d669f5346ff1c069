# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replication status of a cluster: read-only SQL in every member, assembled into one picture.

``probe_member`` asks one pod (one exec, one query); ``assemble`` is pure: it takes the probes and
the cluster's records (the ConfigMap naming the primary, the read-write Service) and computes
roles, lags, health and the summary, so unit tests feed it recorded probes.

Why lag is computed the way it is:

* Lag in bytes is measured against the primary's *current* WAL position, not against what the
  primary believes it has sent, so a standby that silently stopped receiving shows its real gap.
* Replay delay in seconds comes from ``pg_last_xact_replay_timestamp()`` only while the standby has
  received WAL it has not replayed. On an idle primary that timestamp ages forever although
  nothing is behind; there the delay is 0.
* Members are probed in parallel, so each reading is close in time to the primary's; a standby
  that read a position beyond the primary's (it was probed a moment later) has lag 0, not < 0.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
from typing import Any, Callable

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ClusterBackend,
    ClusterError,
    ExecLost,
    ExecTimeout,
    PodUnavailable,
    StatefulSetMembers,
    AuthError,
    member_ordinal,
    pod_is_ready,
    read_optional,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._membership import Membership, cluster_name, membership_of, rendered_settings
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import human_bytes, lsn_to_int

# Every value comes from one statement so it describes one instant of the member. CASE keeps the
# recovery-only and primary-only functions (which raise errors on the other role) from running.
STATUS_SQL = """
SELECT json_build_object(
  'server_version_num', current_setting('server_version_num')::int,
  'system_identifier', (pg_control_system()).system_identifier::text,
  'in_recovery', pg_is_in_recovery(),
  'current_lsn', CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END,
  'timeline', CASE WHEN pg_is_in_recovery()
      THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (pg_control_checkpoint()).timeline_id)
      ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  'receive_lsn', pg_last_wal_receive_lsn()::text,
  'replay_lsn', pg_last_wal_replay_lsn()::text,
  'replay_paused', CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
  'replay_delay_seconds', CASE
      WHEN NOT pg_is_in_recovery() THEN NULL
      WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_replay_lsn() IS NULL THEN NULL
      WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
      WHEN pg_last_xact_replay_timestamp() IS NULL THEN NULL
      ELSE round(greatest(0, extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()))::numeric, 3) END,
  'last_replay_timestamp', pg_last_xact_replay_timestamp(),
  'wal_receiver', (SELECT json_build_object(
      'status', status, 'sender_host', sender_host, 'sender_port', sender_port,
      'conninfo', conninfo, 'slot_name', slot_name, 'flushed_lsn', flushed_lsn::text,
      'received_tli', received_tli, 'last_msg_receipt_time', last_msg_receipt_time)
    FROM pg_stat_wal_receiver),
  'replication', (SELECT coalesce(json_agg(json_build_object(
      'application_name', application_name, 'client_addr', client_addr::text, 'state', state,
      'sync_state', sync_state, 'sync_priority', sync_priority, 'sent_lsn', sent_lsn::text,
      'write_lsn', write_lsn::text, 'flush_lsn', flush_lsn::text, 'replay_lsn', replay_lsn::text,
      'replay_lag_seconds', extract(epoch FROM replay_lag)) ORDER BY application_name), '[]'::json)
    FROM pg_stat_replication),
  'slots', (SELECT coalesce(json_agg(json_build_object(
      'name', slot_name, 'type', slot_type, 'active', active, 'wal_status', wal_status,
      'safe_wal_size', safe_wal_size, 'restart_lsn', restart_lsn::text) ORDER BY slot_name), '[]'::json)
    FROM pg_replication_slots),
  'archive_mode', current_setting('archive_mode'),
  'archiver', (SELECT json_build_object(
      'archived_count', archived_count, 'last_archived_wal', last_archived_wal,
      'last_archived_time', last_archived_time, 'failed_count', failed_count,
      'last_failed_wal', last_failed_wal, 'last_failed_time', last_failed_time)
    FROM pg_stat_archiver),
  'synchronous_standby_names', current_setting('synchronous_standby_names'),
  'pending_restart', (SELECT coalesce(json_agg(name ORDER BY name), '[]'::json) FROM pg_settings WHERE pending_restart)
)
"""

PSQL_CONNECT_TIMEOUT = 5
# psql exits 2 when it cannot connect (server stopped, starting, shutting down, no socket).
PSQL_CONNECTION_FAILED = 2

_HOST_IN_CONNINFO = re.compile(r"(?:^|\s)host=('(?:[^'\\]|\\.)*'|\S+)")


def psql_argv(sql: str, timeout: float, application_name: str = "dbonk8s-replication-info") -> list[str]:
    """psql in the container: local socket + peer auth from the pod env, read-only session.

    ``statement_timeout`` keeps the query from outliving the exec timeout in the pod (closing the
    exec session does not stop it); the session is read-only as a guarantee, not a convention.
    """
    statement_ms = max(1000, int(timeout * 1000) - 500)
    conninfo = (
        f"dbname=postgres connect_timeout={PSQL_CONNECT_TIMEOUT} application_name={application_name} "
        f"options='-c statement_timeout={statement_ms} -c default_transaction_read_only=on'"
    )
    return ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql]


def upstream_host(conninfo: str | None) -> str | None:
    if not conninfo:
        return None
    match = _HOST_IN_CONNINFO.search(conninfo)
    if not match:
        return None
    value = match.group(1)
    if value.startswith("'"):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _connection_failure_state(stderr: str) -> str:
    """What psql's failure to connect says about the server.

    psql exits 2 both when no server runs and when a running server refuses the session
    (authentication, too many clients): only the first kind means the member is down.
    """
    lowered = stderr.lower()
    if "starting up" in lowered or "not yet accepting connections" in lowered:
        return "starting"
    if "shutting down" in lowered:
        return "stopping"
    if "in recovery mode" in lowered:
        return "crash recovery"
    if "no such file or directory" in lowered or "connection refused" in lowered:
        return "stopped"
    return "unknown"


def _pod_summary(pod: dict) -> dict[str, Any]:
    status = pod.get("status") or {}
    restarts = 0
    for container in status.get("containerStatuses") or []:
        restarts += int(container.get("restartCount") or 0)
    metadata = pod.get("metadata") or {}
    return {
        "name": metadata["name"],
        "phase": status.get("phase") or "Unknown",
        "ready": pod_is_ready(pod),
        "restarts": restarts,
        "pod_ip": status.get("podIP"),
        "terminating": bool(metadata.get("deletionTimestamp")),
        "labels": metadata.get("labels") or {},
    }


def probe_member(backend: ClusterBackend, pod: dict, timeout: float) -> dict[str, Any]:
    """What one member says about itself; never raises for a member-level problem."""
    probe: dict[str, Any] = {"pod": _pod_summary(pod), "status": None, "error": None, "reachable": False, "state": None}
    name = probe["pod"]["name"]
    if probe["pod"]["phase"] != "Running":
        probe["state"] = "pod " + probe["pod"]["phase"].lower()
        probe["error"] = f"pod phase is {probe['pod']['phase']}"
        return probe
    try:
        result = backend.exec(name, psql_argv(STATUS_SQL, timeout), timeout)
    except PodUnavailable as exc:
        probe.update(state="container not running", error=str(exc))
        return probe
    except (ExecTimeout, ExecLost) as exc:
        probe.update(state="unknown", error=str(exc))
        return probe
    except AuthError:
        raise
    except ClusterError as exc:
        probe.update(state="unknown", error=str(exc))
        return probe
    if result.rc == PSQL_CONNECTION_FAILED:
        probe.update(state=_connection_failure_state(result.stderr), error=_first_line(result.stderr) or "psql could not connect")
        return probe
    if result.rc != 0:
        probe.update(state="unknown", error=f"psql exited {result.rc}: {_first_line(result.stderr) or _first_line(result.stdout)}")
        return probe
    try:
        status = json.loads(result.stdout.strip())
    except ValueError:
        probe.update(state="unknown", error=f"unreadable status from psql: {result.stdout.strip()[:200]!r}")
        return probe
    probe.update(status=status, reachable=True)
    return probe


def probe_members(backend: ClusterBackend, pods: list[dict], timeout: float) -> list[dict[str, Any]]:
    if len(pods) <= 1:
        return [probe_member(backend, pod, timeout) for pod in pods]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(pods), 8)) as pool:
        return list(pool.map(lambda pod: probe_member(backend, pod, timeout), pods))


def _lsn(value: str | None) -> int | None:
    return lsn_to_int(value) if value else None


def _gap(ahead: int | None, behind: int | None) -> int | None:
    if ahead is None or behind is None:
        return None
    return max(0, ahead - behind)


def _replication_row(rows: list[dict], member: dict[str, Any]) -> dict | None:
    """The primary's ``pg_stat_replication`` row of a standby.

    Standbys connect with ``application_name`` = pod name (the contract of the pod scripts); the pod
    IP is the fallback for a standby configured by hand without it.
    """
    for row in rows:
        if row.get("application_name") == member["name"]:
            return row
    if member["pod_ip"]:
        for row in rows:
            if (row.get("client_addr") or "").split("/")[0] == member["pod_ip"]:
                return row
    return None


def _choose_primary(primaries: list[dict], recorded: str | None) -> dict | None:
    """Of the members out of recovery, the one the cluster should follow.

    The record wins (modules and start-up follow it); otherwise the newest timeline, then the
    lowest ordinal (the order of the list).
    """
    if not primaries:
        return None
    for member in primaries:
        if member["name"] == recorded:
            return member
    return max(primaries, key=lambda member: (member.get("timeline") or 0, -primaries.index(member)))


def assemble(
    probes: list[dict[str, Any]],
    cluster_name: str,
    namespace: str,
    recorded_primary: str | None = None,
    record_epoch: str | None = None,
    rw_service_target: str | None = None,
) -> dict[str, Any]:
    """Members and cluster view from the probes (pure)."""
    members: list[dict[str, Any]] = []
    for probe in probes:
        pod, status = probe["pod"], probe["status"] or {}
        receiver = status.get("wal_receiver") or None
        if probe["reachable"]:
            role = "standby" if status.get("in_recovery") else "primary"
        elif probe["state"] == "unknown":
            role = "unknown"
        else:
            role = "down"
        members.append(
            {
                "name": pod["name"],
                "pod_phase": pod["phase"],
                "pod_ready": pod["ready"],
                "pod_ip": pod["pod_ip"],
                "restarts": pod["restarts"],
                "role": role,
                "state": probe["state"],
                "error": probe["error"],
                "in_recovery": status.get("in_recovery"),
                "timeline": status.get("timeline"),
                "system_identifier": status.get("system_identifier"),
                "server_version_num": status.get("server_version_num"),
                "current_lsn": status.get("current_lsn"),
                "receive_lsn": status.get("receive_lsn"),
                "replay_lsn": status.get("replay_lsn"),
                "receive_lag_bytes": None,
                "replay_lag_bytes": None,
                "replay_delay_seconds": status.get("replay_delay_seconds"),
                "last_replay_timestamp": status.get("last_replay_timestamp"),
                "replay_paused": status.get("replay_paused"),
                "sync_state": None,
                "replication_state": None,
                "wal_receiver_status": (receiver or {}).get("status"),
                "upstream_host": upstream_host((receiver or {}).get("conninfo")) or (receiver or {}).get("sender_host"),
                "wal_receiver": receiver,
                "replication": status.get("replication") or [],
                "slots": status.get("slots") or [],
                "archive_mode": status.get("archive_mode"),
                "archiver": status.get("archiver"),
                "synchronous_standby_names": status.get("synchronous_standby_names"),
                "pending_restart": status.get("pending_restart") or [],
            }
        )

    primaries = [member for member in members if member["role"] == "primary"]
    primary = _choose_primary(primaries, recorded_primary)
    primary_lsn = _lsn(primary["current_lsn"]) if primary else None
    replication_rows = (primary or {}).get("replication") or []
    names = {member["name"] for member in members}
    reasons: list[str] = []

    if primary is None:
        reasons.append("no primary: no member is out of recovery")
    split_brain = len(primaries) > 1
    if split_brain:
        reasons.append("split brain: " + ", ".join(member["name"] for member in primaries) + " are all out of recovery (primaries)")

    streaming = 0
    sync = 0
    for member in members:
        if member["role"] == "primary":
            if member["state"] is None:
                member["state"] = "running"
            continue
        if member["role"] != "standby":
            what = "down" if member["role"] == "down" else "in an unknown state"
            reasons.append(f"{member['name']} is {what}: {member['error']}")
            continue
        receive, replay = _lsn(member["receive_lsn"]), _lsn(member["replay_lsn"])
        # Right after a restart the receiver reports where streaming restarted (a segment start),
        # behind what was already replayed; a standby has received at least what it replayed.
        if receive is not None and replay is not None:
            receive = max(receive, replay)
        member["receive_lag_bytes"] = _gap(primary_lsn, receive)
        member["replay_lag_bytes"] = _gap(primary_lsn, replay)
        row = _replication_row(replication_rows, member)
        if row:
            member["sync_state"] = row.get("sync_state")
            member["replication_state"] = row.get("state")
        if member["wal_receiver_status"] == "streaming":
            member["state"] = "streaming"
        elif member["wal_receiver_status"]:
            member["state"] = member["wal_receiver_status"]
        else:
            member["state"] = "in archive recovery"
        if member["replay_paused"]:
            member["state"] += " (replay paused)"
            reasons.append(f"replay is paused on {member['name']}")
        if primary is None:
            continue
        if row and row.get("state") == "streaming":
            streaming += 1
            if row.get("sync_state") in ("sync", "quorum"):
                sync += 1
        else:
            receiver = member["wal_receiver_status"] or "not running"
            if member["upstream_host"]:
                receiver += f" from {member['upstream_host']}"
            listed = f"listed as {row.get('state')}" if row else "not listed"
            reasons.append(
                f"{member['name']} is not streaming from the primary {primary['name']} ({listed} in its pg_stat_replication; wal receiver: {receiver})"
            )
        upstream = member["upstream_host"]
        upstream_member = upstream.split(".")[0] if upstream else None
        if upstream_member in names and upstream_member != primary["name"]:
            reasons.append(f"{member['name']} follows {upstream}, not the primary {primary['name']}")

    timeline_divergence = False
    if primary is not None:
        for member in members:
            if member is primary or member["timeline"] is None or member["role"] not in ("primary", "standby"):
                continue
            if member["timeline"] != primary["timeline"]:
                timeline_divergence = True
                reasons.append(
                    f"timeline divergence: {member['name']} is on timeline {member['timeline']}, "
                    f"the primary {primary['name']} on timeline {primary['timeline']}"
                )
        identifiers = {member["system_identifier"] for member in members if member["system_identifier"]}
        if len(identifiers) > 1:
            reasons.append("members belong to different database clusters (system identifiers differ): " + ", ".join(sorted(identifiers)))

    for member in members:
        if member["role"] in ("primary", "standby") and not member["pod_ready"]:
            reasons.append(f"pod {member['name']} is not ready")
    if primary is not None:
        archiver = primary["archiver"] or {}
        if primary["archive_mode"] not in (None, "off") and archiver.get("last_failed_time") and (
            not archiver.get("last_archived_time") or archiver["last_failed_time"] > archiver["last_archived_time"]
        ):
            reasons.append(f"WAL archiving is failing on {primary['name']} (last failed: {archiver.get('last_failed_wal')})")
        for slot in primary["slots"]:
            if slot.get("wal_status") == "lost":
                reasons.append(f"replication slot {slot.get('name')} on {primary['name']} has lost required WAL")
        if recorded_primary and recorded_primary != primary["name"]:
            reasons.append(f"the record of the primary (ConfigMap {cluster_name}-primary) names {recorded_primary}, but {primary['name']} is the primary")
        if rw_service_target and rw_service_target != primary["name"]:
            reasons.append(f"Service {cluster_name}-rw selects {rw_service_target}, not the primary {primary['name']}")

    standbys = [member for member in members if member["role"] == "standby"]
    lags = [member["replay_lag_bytes"] for member in standbys if member["replay_lag_bytes"] is not None]
    cluster = {
        "name": cluster_name,
        "namespace": namespace,
        "members": len(members),
        "primary": primary["name"] if primary else None,
        "primaries": [member["name"] for member in primaries],
        "recorded_primary": recorded_primary,
        "record_epoch": record_epoch,
        "rw_service_target": rw_service_target,
        "timeline": primary["timeline"] if primary else None,
        "current_lsn": primary["current_lsn"] if primary else None,
        "standbys": len(standbys),
        "streaming_standbys": streaming,
        "sync_standbys": sync,
        "max_replay_lag_bytes": max(lags) if lags else None,
        "down": [member["name"] for member in members if member["role"] == "down"],
        "absent": [member["name"] for member in members if member["pod_phase"] == "Absent"],
        "unknown": [member["name"] for member in members if member["role"] == "unknown"],
        "split_brain": split_brain,
        "timeline_divergence": timeline_divergence,
        "healthy": not reasons,
        "reasons": reasons,
    }
    cluster["summary"] = summary_lines(cluster, members)
    return {"cluster": cluster, "members": members}


def _fmt_bytes(value: int | None) -> str:
    return "" if value is None else human_bytes(value)


def summary_lines(cluster: dict[str, Any], members: list[dict[str, Any]]) -> list[str]:
    """A table in the manner of ``patronictl list``, then one line of health."""
    header = ["Member", "Pod", "Role", "State", "TL", "LSN", "Receive lag", "Replay lag", "Delay", "Sync"]
    rows = []
    for member in members:
        pod = member["pod_phase"] + (", ready" if member["pod_ready"] else ", not ready")
        lsn = member["current_lsn"] if member["role"] == "primary" else member["replay_lsn"]
        delay = member["replay_delay_seconds"]
        rows.append(
            [
                member["name"],
                pod,
                {"primary": "Primary", "standby": "Standby"}.get(member["role"], member["role"]),
                member["state"] or "",
                "" if member["timeline"] is None else str(member["timeline"]),
                lsn or "",
                _fmt_bytes(member["receive_lag_bytes"]),
                _fmt_bytes(member["replay_lag_bytes"]),
                "" if delay is None else f"{float(delay):g}s",
                member["sync_state"] or "",
            ]
        )
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    border = "+" + "+".join("-" * (width + 2) for width in widths) + "+"

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)) + " |"

    title = f"+ Cluster: {cluster['name']} (namespace {cluster['namespace']}) "
    lines = [title + border[len(title):] if len(title) < len(border) else title.rstrip(), line(header), border]
    lines += [line(row) for row in rows]
    lines.append(border)
    lines.append(
        f"primary: {cluster['primary'] or 'none'}, streaming standbys: {cluster['streaming_standbys']}, "
        f"synchronous standbys: {cluster['sync_standbys']}"
    )
    lines.append("healthy" if cluster["healthy"] else "unhealthy: " + "; ".join(cluster["reasons"]))
    return lines


def absent_probe(name: str, membership: Membership) -> dict[str, Any]:
    """The probe of a member that should exist but has no pod: down, never left out."""
    pod = {"name": name, "phase": "Absent", "ready": False, "restarts": 0, "pod_ip": None, "terminating": False, "labels": {}}
    return {"pod": pod, "status": None, "reachable": False, "state": "pod absent", "error": f"no pod (a member by {membership.source_of(name)})"}


def collect(backend: ClusterBackend, members: StatefulSetMembers, exec_timeout: float) -> dict[str, Any]:
    """One observation of the cluster. Raises ``ClusterError`` only for cluster-level failures.

    Every member the cluster should have is in the result (``_membership``), those without a pod
    included, so that a deleted pod makes the cluster unhealthy instead of smaller.
    """
    pods, statefulset = backend.find_members(members)
    name = cluster_name(members, pods)
    probes = probe_members(backend, pods, exec_timeout)
    reported_sync = [probe["status"].get("synchronous_standby_names") for probe in probes if probe["status"]]
    membership = membership_of(members, statefulset, pods, rendered_settings(backend, name), reported_sync)
    probes += [absent_probe(absent, membership) for absent in membership.absent(pods)]
    probes.sort(key=lambda probe: (member_ordinal(probe["pod"]["name"]), probe["pod"]["name"]))
    record = read_optional(lambda: backend.get_configmap(f"{name}-primary")) or {}
    service = read_optional(lambda: backend.get_service(f"{name}-rw")) or {}
    record_data = record.get("data") or {}
    selector = (service.get("spec") or {}).get("selector") or {}
    state = assemble(
        probes,
        cluster_name=name,
        namespace=backend.namespace,
        recorded_primary=record_data.get("primary"),
        record_epoch=record_data.get("epoch"),
        rw_service_target=selector.get("statefulset.kubernetes.io/pod-name"),
    )
    state["membership"] = {
        "members": membership.names,
        "listed_elsewhere": membership.listed_elsewhere,
        "sources": membership.sources,
        "sync_settings": membership.sync_settings,
    }
    return state


def unmet_conditions(state: dict[str, Any], wait_for: dict[str, Any]) -> list[str]:
    """What of ``wait_for`` the observed state does not satisfy, in words."""
    cluster = state["cluster"]
    unmet: list[str] = []
    if cluster["primary"] is None or cluster["split_brain"]:
        unmet.append("a single primary (found: " + (", ".join(cluster["primaries"]) or "none") + ")")
    min_streaming = wait_for.get("min_streaming")
    if min_streaming is not None and cluster["streaming_standbys"] < min_streaming:
        unmet.append(f"min_streaming={min_streaming} (streaming standbys: {cluster['streaming_standbys']})")
    min_sync = wait_for.get("min_sync")
    if min_sync is not None and cluster["sync_standbys"] < min_sync:
        unmet.append(f"min_sync={min_sync} (synchronous standbys: {cluster['sync_standbys']})")
    max_lag = wait_for.get("max_lag_bytes")
    if max_lag is not None:
        for member in state["members"]:
            if member["role"] == "primary":
                continue
            if member["role"] != "standby":
                # A member that is down or does not answer is not within any lag.
                unmet.append(f"max_lag_bytes={max_lag} ({member['name']}: {member['state'] or member['role']}, replay lag unknown)")
                continue
            lag = member["replay_lag_bytes"]
            if lag is None:
                unmet.append(f"max_lag_bytes={max_lag} ({member['name']}: replay lag unknown)")
            elif lag > max_lag:
                unmet.append(f"max_lag_bytes={max_lag} ({member['name']}: replay lag {lag} bytes)")
    return unmet


def wait_until(
    observe: Callable[[], dict[str, Any]],
    wait_for: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], list[str], int]:
    """Observe until ``wait_for`` is met or its timeout passes: (last state, unmet, attempts)."""
    timeout = float(wait_for.get("timeout") or 0)
    interval = max(float(wait_for.get("interval") or 1), 0.1)
    deadline = clock() + timeout
    attempts = 0
    while True:
        attempts += 1
        state = observe()
        unmet = unmet_conditions(state, wait_for)
        if not unmet:
            return state, [], attempts
        remaining = deadline - clock()
        if remaining <= 0:
            return state, unmet, attempts
        sleep(min(interval, remaining))
