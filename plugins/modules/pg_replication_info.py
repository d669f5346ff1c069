#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_replication_info
short_description: Replication health of a PostgreSQL cluster on Kubernetes
version_added: 0.1.0
description:
  - Finds the members of a PostgreSQL cluster (the pods of a StatefulSet, or pods selected by labels)
    and runs one read-only query in each through pod exec.
  - Returns, per member, the pod state, role, timeline, WAL positions, lag in bytes against the primary's
    current WAL position, replay delay, synchronous state as the primary sees it, WAL receiver, replication
    slots, archiver statistics and settings pending a restart.
  - Returns, for the cluster, the primary, the number of streaming and synchronous standbys, whether it is
    healthy and why not, split brain and timeline divergence, and a summary that reads like C(patronictl list).
  - With O(wait_for), polls until the cluster meets the given conditions, or fails after the timeout naming
    the conditions that were not met and the last observed state.
  - Never changes anything. Runs on the controller.
author:
  - dbonk8s.postgresql contributors (@dbonk8s)
extends_documentation_fragment:
  - dbonk8s.postgresql.connection
  - dbonk8s.postgresql.attributes
  - dbonk8s.postgresql.attributes.INFO_MODULE
options:
  exec_timeout:
    description:
      - Seconds allowed for the query in each member (pod exec included). Members are queried in parallel.
      - A member that does not answer in time is reported with role V(unknown).
    type: int
    default: 15
  wait_for:
    description:
      - Conditions to wait for. Without it the module observes once.
      - Every condition also requires exactly one primary.
    type: dict
    suboptions:
      min_streaming:
        description: Minimum number of standbys streaming from the primary (as the primary's C(pg_stat_replication) shows).
        type: int
      min_sync:
        description: Minimum number of streaming standbys whose C(sync_state) is C(sync) or C(quorum).
        type: int
      max_lag_bytes:
        description:
          - Maximum replay lag in bytes of every standby that is up, against the primary's current WAL position.
          - A standby whose lag cannot be measured does not meet it.
        type: int
      timeout:
        description: Seconds to wait before failing.
        type: int
        default: 60
      interval:
        description: Seconds between two observations.
        type: int
        default: 2
notes:
  - Lag in seconds is reported as O(ignore:replay_delay_seconds) only while a standby has received WAL that it has
    not replayed, so it does not grow on an idle primary the way C(now() - pg_last_xact_replay_timestamp()) does.
  - The SQL runs through C(psql) in the container O(container), over the local socket with the pod's
    environment (C(PGHOST), C(PGUSER)), in a read-only session with a statement timeout.
seealso:
  - name: pg_stat_replication
    description: What the primary reports about each standby.
    link: https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-REPLICATION-VIEW
  - name: kubernetes.core.k8s_exec
    description: Running commands in pods.
    link: https://docs.ansible.com/ansible/latest/collections/kubernetes/core/k8s_exec_module.html
"""

EXAMPLES = r"""
- name: Read the replication status of the default cluster (namespace postgres, StatefulSet postgres)
  dbonk8s.postgresql.pg_replication_info:
  register: replication

- name: Show it like patronictl list
  ansible.builtin.debug:
    msg: "{{ replication.cluster.summary }}"

- name: Wait until two standbys stream and one is synchronous, with at most 16 MiB of replay lag
  dbonk8s.postgresql.pg_replication_info:
    namespace: databases
    statefulset: orders
    context: kind-postgres
    wait_for:
      min_streaming: 2
      min_sync: 1
      max_lag_bytes: 16777216
      timeout: 300

- name: Fail the play when the cluster is not healthy
  dbonk8s.postgresql.pg_replication_info:
  register: replication
  failed_when: not replication.cluster.healthy

- name: Read a cluster of the local pod runtime (make up-local prints its kubeconfig)
  dbonk8s.postgresql.pg_replication_info:
    kubeconfig: /tmp/localpods-run/kubeconfig
"""

RETURN = r"""
cluster:
  description: The cluster as a whole.
  returned: always
  type: dict
  contains:
    name:
      description: Cluster name (the StatefulSet, or the pods' C(app.kubernetes.io/instance) label).
      type: str
      sample: postgres
    namespace:
      description: Namespace.
      type: str
      sample: postgres
    members:
      description: Number of members, those without a pod included.
      type: int
      sample: 3
    primary:
      description:
        - The member out of recovery; with split brain, the one named by the record of the primary
          (else the newest timeline). V(null) without any.
      type: str
      sample: postgres-0
    primaries:
      description: Every member out of recovery (more than one is split brain).
      type: list
      elements: str
      sample: [postgres-0]
    recorded_primary:
      description: The primary named by ConfigMap C(<name>-primary), if it exists.
      type: str
      sample: postgres-0
    record_epoch:
      description: The C(epoch) of that record.
      type: str
      sample: "1"
    rw_service_target:
      description: The pod that Service C(<name>-rw) selects, if it exists.
      type: str
      sample: postgres-0
    timeline:
      description: The primary's timeline.
      type: int
      sample: 1
    current_lsn:
      description: The primary's current WAL position.
      type: str
      sample: 0/3000148
    standbys:
      description: Number of members in recovery.
      type: int
      sample: 2
    streaming_standbys:
      description: Standbys that the primary's C(pg_stat_replication) shows as C(streaming).
      type: int
      sample: 2
    sync_standbys:
      description: Streaming standbys whose C(sync_state) is C(sync) or C(quorum).
      type: int
      sample: 2
    max_replay_lag_bytes:
      description: Largest replay lag of the standbys, in bytes.
      type: int
      sample: 0
    down:
      description: Members whose pod, container or PostgreSQL is not running, members without a pod included.
      type: list
      elements: str
      sample: []
    absent:
      description:
        - Members the cluster should have but that have no pod (see RV(membership)); each makes the cluster unhealthy.
      type: list
      elements: str
      sample: [postgres-2]
    unknown:
      description: Members that could not be queried (timeout, lost connection, unexpected error).
      type: list
      elements: str
      sample: []
    split_brain:
      description: More than one member is out of recovery.
      type: bool
      sample: false
    timeline_divergence:
      description: A member runs on another timeline than the primary.
      type: bool
      sample: false
    healthy:
      description: No reason below.
      type: bool
      sample: true
    reasons:
      description: Why the cluster is not healthy, one sentence each.
      type: list
      elements: str
      sample: ["postgres-2 is down: pod postgres-2 is not available for exec: container postgres is not running"]
    summary:
      description: A table of the members in the manner of C(patronictl list), then the health.
      type: list
      elements: str
      sample:
        - "+ Cluster: postgres (namespace postgres) ---+----+-----------+-------------+------------+-------+--------+"
        - "| Member     | Pod            | Role    | State     | TL | LSN       | Receive lag | Replay lag | Delay | Sync   |"
        - "| postgres-0 | Running, ready | Primary | running   | 1  | 0/3000148 |             |            |       |        |"
        - "| postgres-1 | Running, ready | Standby | streaming | 1  | 0/3000148 | 0 B         | 0 B        | 0s    | quorum |"
        - "primary: postgres-0, streaming standbys: 1, synchronous standbys: 1"
        - "healthy"
members:
  description: One entry per member, those without a pod included, ordered by ordinal.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Pod name.
      type: str
      sample: postgres-1
    pod_phase:
      description: The pod's C(status.phase); C(Absent) for a member that has no pod.
      type: str
      sample: Running
    pod_ready:
      description: The pod's Ready condition.
      type: bool
      sample: true
    pod_ip:
      description: The pod's IP.
      type: str
      sample: 10.244.0.7
    restarts:
      description: Container restarts of the pod, summed.
      type: int
      sample: 0
    role:
      description: V(primary), V(standby), V(down) (pod, container or PostgreSQL not running) or V(unknown).
      type: str
      sample: standby
    state:
      description: >-
        V(running) (primary), the WAL receiver status (V(streaming)...) or V(in archive recovery) for standbys,
        with C((replay paused)) appended; V(stopped), V(starting), V(stopping), V(container not running),
        V(pod pending)... when down.
      type: str
      sample: streaming
    error:
      description: Why the member could not be queried.
      type: str
      sample: null
    in_recovery:
      description: C(pg_is_in_recovery()).
      type: bool
      sample: true
    timeline:
      description: Timeline (standbys, the one received; primaries, the one written).
      type: int
      sample: 1
    system_identifier:
      description: Database system identifier (the same on every member of one cluster).
      type: str
      sample: "7310887253479432211"
    server_version_num:
      description: PostgreSQL version number.
      type: int
      sample: 150018
    current_lsn:
      description: The primary's current WAL position.
      type: str
      sample: 0/3000148
    receive_lsn:
      description: Last WAL position received and flushed by a standby.
      type: str
      sample: 0/3000148
    replay_lsn:
      description: Last WAL position replayed by a standby.
      type: str
      sample: 0/3000148
    receive_lag_bytes:
      description: The primary's current position minus the received position.
      type: int
      sample: 0
    replay_lag_bytes:
      description: The primary's current position minus the replayed position.
      type: int
      sample: 0
    replay_delay_seconds:
      description: Age of the last replayed transaction while received WAL waits for replay; 0 when caught up.
      type: float
      sample: 0
    last_replay_timestamp:
      description: C(pg_last_xact_replay_timestamp()).
      type: str
      sample: "2026-11-26T18:00:00.123456+00:00"
    replay_paused:
      description: C(pg_is_wal_replay_paused()) on standbys.
      type: bool
      sample: false
    sync_state:
      description: V(sync), V(quorum), V(potential) or V(async), as the primary's C(pg_stat_replication) shows this standby.
      type: str
      sample: quorum
    replication_state:
      description: The C(state) of this standby in the primary's C(pg_stat_replication).
      type: str
      sample: streaming
    wal_receiver_status:
      description: C(pg_stat_wal_receiver.status) of a standby.
      type: str
      sample: streaming
    upstream_host:
      description: The host a standby receives WAL from (C(host) of its C(primary_conninfo)).
      type: str
      sample: postgres-0.postgres
    wal_receiver:
      description: The row of C(pg_stat_wal_receiver) (status, sender_host, sender_port, conninfo, slot_name...).
      type: dict
    replication:
      description: Rows of this member's C(pg_stat_replication) (its downstream standbys).
      type: list
      elements: dict
    slots:
      description: Replication slots (name, type, active, wal_status, safe_wal_size, restart_lsn).
      type: list
      elements: dict
    archive_mode:
      description: The C(archive_mode) setting.
      type: str
      sample: "on"
    archiver:
      description: C(pg_stat_archiver) (archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time).
      type: dict
    synchronous_standby_names:
      description: The C(synchronous_standby_names) setting.
      type: str
      sample: ANY 1 ("postgres-0", "postgres-1", "postgres-2")
    pending_restart:
      description: Settings changed in the configuration that need a restart.
      type: list
      elements: str
      sample: []
membership:
  description:
    - Which members the cluster should have, and what says so. The members are the union of the StatefulSet's
      C(spec.replicas) and C(status.replicas), the rendered member list (C(dbonk8s.members) in ConfigMap
      C(<name>-config)), the names in C(synchronous_standby_names) and the pods found, so that a member whose pod is
      gone is reported as down instead of being left out.
  returned: always
  type: dict
  contains:
    members:
      description: The member pod names, in ordinal order.
      type: list
      elements: str
      sample: [postgres-0, postgres-1, postgres-2]
    listed_elsewhere:
      description: Names in C(synchronous_standby_names) that are no pod of the StatefulSet (a wildcard C(*) included).
      type: list
      elements: str
      sample: []
    sources:
      description: Each source and the names it lists.
      type: dict
      sample: {"StatefulSet spec.replicas=3": [postgres-0, postgres-1, postgres-2], pods: [postgres-0, postgres-1]}
    sync_settings:
      description: Every value of C(synchronous_standby_names) seen, the rendered one and those the running members report.
      type: list
      elements: str
      sample: ['ANY 1 ("postgres-0", "postgres-1", "postgres-2")']
summary:
  description: The same as RV(cluster.summary), for C(debug) output.
  returned: always
  type: list
  elements: str
wait_for:
  description: How the wait ended.
  returned: when O(wait_for) is set
  type: dict
  contains:
    met:
      description: Whether every condition was met.
      type: bool
      sample: true
    attempts:
      description: Observations made.
      type: int
      sample: 3
    unmet:
      description: The conditions not met at the last observation.
      type: list
      elements: str
      sample: []
"""

from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _inputs
from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _permissions
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ClusterError, backend_from_params
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._connection import (
    connection_argument_spec,
    input_problems,
    new_cluster_module,
    members_from_params,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._replication import collect, wait_until

# What a valid value of each option is, beyond its type; the shared options are checked too.
OPTION_CHECKS = {"exec_timeout": _inputs.integer(1)}
WAIT_FOR_CHECKS = {
    **{f"wait_for.{key}": _inputs.integer(0) for key in ("min_streaming", "min_sync", "max_lag_bytes", "timeout")},
    "wait_for.interval": _inputs.integer(1),
}


def argument_spec() -> dict[str, Any]:
    spec = connection_argument_spec()
    spec.update(
        exec_timeout={"type": "int", "default": 15},
        wait_for={
            "type": "dict",
            "options": {
                "min_streaming": {"type": "int"},
                "min_sync": {"type": "int"},
                "max_lag_bytes": {"type": "int"},
                "timeout": {"type": "int", "default": 60},
                "interval": {"type": "int", "default": 2},
            },
        },
    )
    return spec


def main() -> None:
    module = new_cluster_module(argument_spec(), OPTION_CHECKS)
    params = module.params
    wait_for = params["wait_for"]
    if wait_for is not None:
        problems = input_problems({f"wait_for.{key}": value for key, value in wait_for.items()}, WAIT_FOR_CHECKS)
        if problems:
            module.fail_json(msg=" ".join(problems))

    members = members_from_params(params)
    try:
        backend = backend_from_params(params, fail=module.fail_json)
        _permissions.require(backend, members, _permissions.READ, "reading the replication status")

        def observe() -> dict[str, Any]:
            return collect(backend, members, float(params["exec_timeout"]))

        if wait_for is None:
            state = observe()
            module.exit_json(changed=False, summary=state["cluster"]["summary"], **state)
        state, unmet, attempts = wait_until(observe, wait_for)
    except ClusterError as exc:
        module.fail_json(msg=str(exc))

    result = dict(state, changed=False, summary=state["cluster"]["summary"], wait_for={"met": not unmet, "attempts": attempts, "unmet": unmet})
    if unmet:
        module.fail_json(
            msg=(
                f"wait_for not met within {wait_for['timeout']}s: " + "; ".join(unmet)
                + ". Last observed state: " + " / ".join(line for line in state["cluster"]["summary"] if not line.startswith("+"))
            ),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
