#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_switchover
short_description: Planned switchover of the primary of a PostgreSQL cluster on Kubernetes
version_added: 0.1.0
description:
  - Makes a standby of a cluster deployed by the C(dbonk8s.postgresql.pg_cluster) role its primary, without
    losing an acknowledged commit, and makes the old primary a standby of the new one.
  - "The procedure, one named step at a time (the names of RV(steps)): C(preflight) (exactly one primary,
    the candidate streaming within O(max_lag_bytes), no other operation in progress), C(lease) (taken in
    ConfigMap C(<name>-primary) with optimistic concurrency), C(checkpoint) on the old primary, C(stop) (the
    old primary is held and shut down fast; its standbys receive the WAL up to its shutdown checkpoint),
    C(verify) (the candidate replayed that checkpoint, otherwise the old primary is started again and
    nothing else changes), C(record) (the record of the primary names the candidate, epoch + 1),
    C(promote), C(route) (Service C(<name>-rw) and the C(dbonk8s.io/role) labels), C(repoint) (the other
    standbys follow the new primary after a reload, without restart), C(rejoin) (the old primary becomes a
    standby, with C(pg_rewind) only when needed), C(wait) (the synchronous standbys stream from the new
    primary), C(release) of the lease."
  - Before the C(record) step any failure starts the old primary again; from it on the switchover rolls
    forward. A run interrupted at any step (even killed) leaves its progress in the lease; the next run
    finishes or undoes it before anything else, so the cluster ends with exactly one primary.
  - When the candidate already is the primary, nothing changes (C(changed=false)), except that a record,
    Service or label that does not point at it is corrected.
  - Runs on the controller; commands run in the pods through C(/etc/postgresql/scripts/ctl.sh).
author:
  - dbonk8s.postgresql contributors (@dbonk8s)
extends_documentation_fragment:
  - dbonk8s.postgresql.connection
  - dbonk8s.postgresql.attributes
  - dbonk8s.postgresql.attributes.ACTIONS
options:
  candidate:
    description:
      - The member (pod name) to make primary.
      - Default is the synchronous standby with the least replay lag (a streaming standby when none is
        synchronous).
    type: str
  max_lag_bytes:
    description:
      - Largest replay lag of the candidate, in bytes behind the primary's current WAL position, at which
        the switchover still starts. The write pause grows with it, since the candidate replays the rest
        while writes are stopped.
    type: int
    default: 16777216
  wait_for_rejoin:
    description:
      - Wait until the old primary streams from the new one before returning.
      - Without it, the module returns once the old primary was told to rejoin and the configured
        synchronous standbys stream from the new primary (those are always waited for, since until they
        are back, commits wait).
    type: bool
    default: true
  exec_timeout:
    description: Seconds allowed for each short command in a pod (state, checkpoint, repoint).
    type: int
    default: 30
  stop_timeout:
    description: Seconds allowed for the old primary's checkpoint and fast shutdown.
    type: int
    default: 60
  replay_timeout:
    description: Seconds allowed for the candidate to replay the old primary's shutdown checkpoint.
    type: int
    default: 10
  promote_timeout:
    description: Seconds allowed for the promotion.
    type: int
    default: 60
  rejoin_timeout:
    description: Seconds allowed for the old primary to rejoin (with C(pg_rewind) when needed) and for the
      synchronous standbys to be back.
    type: int
    default: 120
  lease_seconds:
    description:
      - How long the lease outlives the deadline of the step in progress. A run that was killed blocks
        other runs for at most this long after its step's deadline; then the next run takes the lease over
        and finishes or undoes the interrupted switchover.
    type: int
    default: 30
notes:
  - "The credentials need, besides those of M(dbonk8s.postgresql.pg_replication_info), in O(namespace):
    C(update configmaps, patch services, patch pods)."
  - Writes pause from the C(stop) step until a synchronous standby streams from the new primary; RV(write_unavailable_ms)
    measures it up to the end of the promotion.
  - See C(docs/switchover.md) in the collection for the guarantees and what happens after an interruption.
seealso:
  - module: dbonk8s.postgresql.pg_replication_info
  - module: dbonk8s.postgresql.pg_failover
  - name: pg_promote
    description: Promotion of a standby.
    link: https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-RECOVERY-CONTROL
"""

EXAMPLES = r"""
- name: Switch over to the best synchronous standby
  dbonk8s.postgresql.pg_switchover:
  register: switchover

- name: Switch over to postgres-1 of the cluster orders in namespace databases
  dbonk8s.postgresql.pg_switchover:
    namespace: databases
    statefulset: orders
    candidate: orders-1
    max_lag_bytes: 1048576

- name: Show the plan and every preflight finding, change nothing
  dbonk8s.postgresql.pg_switchover:
    candidate: postgres-2
  check_mode: true
  register: plan

- name: Switch over in a cluster of the local pod runtime (make up-local prints its kubeconfig)
  dbonk8s.postgresql.pg_switchover:
    kubeconfig: /tmp/localpods-run/kubeconfig
    candidate: postgres-1
"""

RETURN = r"""
previous_primary:
  description: The primary before the run (the record's, until the preflight observed the running one).
  returned: when the cluster could be read
  type: str
  sample: postgres-0
new_primary:
  description: The primary after the run (the candidate); in check mode, the primary the run would make.
  returned: success
  type: str
  sample: postgres-1
primary:
  description: The same as RV(new_primary).
  returned: success
  type: str
  sample: postgres-1
candidate:
  description: The candidate chosen or given.
  returned: when preflight ran
  type: str
  sample: postgres-1
epoch:
  description: The record's epoch after the switchover.
  returned: when the primary or the record changed (not in check mode)
  type: int
  sample: 2
switchover_lsn:
  description: The old primary's shutdown checkpoint, which the candidate replayed before its promotion.
  returned: when the old primary was stopped
  type: str
  sample: 0/5000028
timeline:
  description: The new primary's timeline.
  returned: when the primary changed
  type: int
  sample: 2
write_unavailable_ms:
  description:
    - Milliseconds from the old primary's shutdown to the end of the promotion, as the module sees it.
    - With synchronous replication a commit on the new primary returns once a synchronous standby
      streams from it; the other standbys follow during the promotion, so that is usually moments
      later. C(hack/bench/switchover.py) measures the gap between acknowledged commits that clients see.
  returned: when the primary changed
  type: int
  sample: 420
sync_back_ms:
  description: Milliseconds from the end of the promotion until the synchronous standbys (and the old primary) streamed.
  returned: when the primary changed
  type: int
  sample: 900
duration_ms:
  description: Milliseconds the whole run took.
  returned: success
  type: int
  sample: 2100
steps:
  description: Each step run, in order, with its duration; a failed step carries its error.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: preflight, duration_ms: 0, status: ok}
    - {name: lease, duration_ms: 3, status: ok}
    - {name: stop, duration_ms: 180, status: ok}
plan:
  description: The steps of a switchover with what each does.
  returned: when preflight ran
  type: list
  elements: dict
  sample:
    - {step: preflight, description: exactly one primary; ...}
findings:
  description: What the preflight found, refusals included.
  returned: when preflight ran
  type: list
  elements: str
  sample: ["replay is paused on candidate postgres-1 (pg_wal_replay_pause()); resume it with SELECT pg_wal_replay_resume()"]
converged:
  description: What was done to finish or undo an interrupted operation (or to correct the record, Service and labels).
  returned: when something was
  type: list
  elements: str
  sample: ["promoted postgres-1 (epoch 2)", "rejoined postgres-0 as a standby of postgres-1"]
rejoin:
  description: What C(ctl.sh follow) reported for the old primary (C(rewound) tells whether C(pg_rewind) changed it).
  returned: when the primary changed
  type: dict
rolled_back:
  description: After a failure before the C(record) step, whether the old primary runs as primary again.
  returned: on failure before the record step
  type: bool
  sample: true
lease:
  description: The lease of the operation that holds the cluster, when the run was refused because of it.
  returned: when another operation holds the lease
  type: dict
  sample: {holder: switchover-ctl-1234-ab12cd34, operation: switchover, step: promote}
notes:
  description: Other things worth knowing (members that could not be repointed and follow at their next start...).
  returned: always
  type: list
  elements: str
"""

from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _inputs
from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _permissions
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ClusterError, backend_from_params
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._connection import (
    connection_argument_spec,
    new_cluster_module,
    members_from_params,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import Timeouts
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._switchover import Switchover, SwitchoverFailed, SwitchoverOptions

TIMEOUT_OPTIONS = ("exec_timeout", "stop_timeout", "replay_timeout", "promote_timeout", "rejoin_timeout", "lease_seconds")

# What a valid value of each option is, beyond its type; the shared options are checked too.
OPTION_CHECKS = {
    **{name: _inputs.integer(1) for name in TIMEOUT_OPTIONS},
    "max_lag_bytes": _inputs.integer(0),
    "candidate": _inputs.pod_name,
}


def argument_spec() -> dict[str, Any]:
    spec = connection_argument_spec()
    spec.update(
        candidate={"type": "str"},
        max_lag_bytes={"type": "int", "default": 16777216},
        wait_for_rejoin={"type": "bool", "default": True},
        exec_timeout={"type": "int", "default": 30},
        stop_timeout={"type": "int", "default": 60},
        replay_timeout={"type": "int", "default": 10},
        promote_timeout={"type": "int", "default": 60},
        rejoin_timeout={"type": "int", "default": 120},
        lease_seconds={"type": "int", "default": 30},
    )
    return spec


def main() -> None:
    module = new_cluster_module(argument_spec(), OPTION_CHECKS)
    params = module.params

    timeouts = Timeouts(
        exec=float(params["exec_timeout"]),
        stop=float(params["stop_timeout"]),
        promote=float(params["promote_timeout"]),
        replay=float(params["replay_timeout"]),
        rejoin=float(params["rejoin_timeout"]),
    )
    options = SwitchoverOptions(candidate=params["candidate"], max_lag_bytes=params["max_lag_bytes"], wait_for_rejoin=params["wait_for_rejoin"])
    try:
        backend = backend_from_params(params, fail=module.fail_json)
        _permissions.require(backend, members_from_params(params), _permissions.OPERATE, "a switchover")
        switchover = Switchover(backend, members_from_params(params), timeouts, lease_seconds=float(params["lease_seconds"]))
        result = switchover.run(options, check_mode=module.check_mode)
    except SwitchoverFailed as exc:
        failed = dict(exc.result)
        failed.pop("diff", None)
        module.fail_json(msg=str(exc), **failed)
    except ClusterError as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
