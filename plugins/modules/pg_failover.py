#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_failover
short_description: Unplanned failover of a PostgreSQL cluster on Kubernetes whose primary is lost
version_added: 0.1.0
description:
  - Confirms that the primary named by the cluster's record (ConfigMap C(<name>-primary)) is lost, promotes the
    standby that received the most WAL, and makes the cluster follow it.
  - "Steps (the names of RV(steps)): C(confirm) (O(probes) probes of the recorded primary over O(confirm_seconds)
    all fail, and no standby still streams from it), C(choose) (the standby with the most WAL received; the
    assessment of what may be lost), C(lease), C(record) (the record names the candidate, epoch + 1, before the
    promotion), C(promote), C(route) (Service C(<name>-rw) and labels), C(repoint) (the other standbys follow the
    new primary), C(release)."
  - "When the promotion loses nothing: with synchronous replication (C(ANY k) or C(FIRST k)), the lost primary
    acknowledged a commit only once k of the listed standbys had flushed it. The listed standbys are every member the
    cluster should have (the StatefulSet's C(spec.replicas) and C(status.replicas), the rendered member list, the
    names in C(synchronous_standby_names)), not the pods that happen to exist. Without O(force), the module promotes
    only when at most k - 1 of them could not be asked (no pod, PostgreSQL stopped, frozen, unreachable, or no WAL
    streamed since it started, so that its position is unknown) and the candidate has flushed at least as much WAL
    as every standby that answered; the position is what the standby flushed, never only what it replayed."
  - The lost primary's last checkpoint, when its pod still answers, is a lower bound of the WAL it wrote. A candidate
    below it is refused; being at or above it proves nothing.
  - Otherwise the module refuses unless O(force=true), and says what may be lost (RV(loss_assessment),
    RV(not_asked)). Each refusal is in RV(refusals) with a code and whether O(force) can override it. Two primaries, no
    standby with a known position, or a O(candidate) that is not an answering standby are never overridden.
  - Limits. Commits by clients that set C(synchronous_commit) to C(local), C(off) or C(remote_write) were not flushed by
    a standby before the acknowledgement and may be lost. A C(synchronous_standby_names) changed on the primary alone
    (C(ALTER SYSTEM)) is not seen once the primary is lost; the module uses the smallest k among the rendered setting
    and what the standbys report. A wildcard C(*) lets standbys outside the cluster confirm commits, so it is refused
    without O(force).
  - The lost primary is not touched. When it starts again, the pod start-up reads the record and makes it a standby
    of the new primary (with C(pg_rewind)); it never starts as a primary again.
  - When the recorded primary runs as primary, nothing changes (C(changed=false)).
author:
  - dbonk8s.postgresql contributors (@dbonk8s)
extends_documentation_fragment:
  - dbonk8s.postgresql.connection
  - dbonk8s.postgresql.attributes
  - dbonk8s.postgresql.attributes.ACTIONS
options:
  candidate:
    description:
      - The standby (pod name) to promote. Default is the standby with the most WAL received.
    type: str
  probes:
    description:
      - How many times the primary is probed before it counts as lost (the first probe is the run's first look at the
        cluster); one answer means it is alive.
      - Each probe asks every member at once and waits at most 3 seconds (or O(exec_timeout) when shorter), so that a
        frozen or cut-off member delays the refusal by at most that much beyond O(confirm_seconds).
    type: int
    default: 3
  confirm_seconds:
    description: The window over which the probes are spread.
    type: int
    default: 10
  max_lag_bytes:
    description:
      - A candidate that flushed more than this much less WAL than the most advanced standby is refused, the gap named.
      - A smaller gap, if any, is refused too unless O(force), since acknowledged commits may be in it.
    type: int
    default: 0
  force:
    description:
      - Promote even when acknowledged commits may be lost (asynchronous replication, more than k - 1 listed standbys
        that could not be asked, a candidate behind another standby or below the lost primary's last checkpoint).
        RV(loss_assessment) says what may be lost.
    type: bool
    default: false
  exec_timeout:
    description: Seconds allowed for each command in a pod, each probe included.
    type: int
    default: 10
  stop_timeout:
    description: Seconds allowed to stop a standby that must be rewound (only after a forced failover).
    type: int
    default: 60
  promote_timeout:
    description: Seconds allowed for the promotion.
    type: int
    default: 60
  rejoin_timeout:
    description: Seconds allowed for repointing the other standbys.
    type: int
    default: 120
  lease_seconds:
    description: How long the lease outlives the deadline of the step in progress (see M(dbonk8s.postgresql.pg_switchover)).
    type: int
    default: 30
notes:
  - "The credentials need, besides those of M(dbonk8s.postgresql.pg_replication_info), in O(namespace):
    C(update configmaps, patch services, patch pods)."
  - See C(docs/switchover.md) in the collection for what is and is not guaranteed, and what happens when the record
    and reality disagree.
seealso:
  - module: dbonk8s.postgresql.pg_switchover
  - module: dbonk8s.postgresql.pg_replication_info
"""

EXAMPLES = r"""
- name: Fail over when the primary is lost
  dbonk8s.postgresql.pg_failover:
  register: failover

- name: Probe the primary 5 times over 30 seconds first
  dbonk8s.postgresql.pg_failover:
    probes: 5
    confirm_seconds: 30

- name: Accept losing commits (asynchronous cluster), after reading the assessment in check mode
  dbonk8s.postgresql.pg_failover:
    force: true
"""

RETURN = r"""
previous_primary:
  description: The lost primary (the one the record named).
  returned: when the cluster could be read
  type: str
  sample: postgres-0
new_primary:
  description:
    - The promoted standby; in check mode, the standby the run would promote.
    - When there was nothing to fail over, the running primary.
  returned: success
  type: str
  sample: postgres-1
primary:
  description: The same as RV(new_primary).
  returned: success
  type: str
  sample: postgres-1
candidate:
  description: The standby chosen or given.
  returned: when the primary was confirmed lost
  type: str
  sample: postgres-1
epoch:
  description: The record's epoch after the failover.
  returned: when the primary changed
  type: int
  sample: 3
timeline:
  description: The new primary's timeline.
  returned: when the primary changed
  type: int
  sample: 3
promote_lsn:
  description: WAL the candidate had received when it was promoted.
  returned: when the primary changed
  type: str
  sample: 0/7000148
received:
  description: WAL flushed by each standby that answered with a known position (the standbys counted).
  returned: when the primary was confirmed lost
  type: dict
  sample: {postgres-1: 0/7000148, postgres-2: 0/7000148}
not_asked:
  description: The listed standbys that could not be asked, or whose position is not known, and why.
  returned: when the primary was confirmed lost
  type: dict
  sample: {postgres-2: it has no pod}
refusals:
  description: Why the failover is refused (with O(force), what it accepted), each with a C(code), a C(message) and
    whether O(force) overrides it (C(forceable)).
  returned: when the primary was confirmed lost
  type: list
  elements: dict
  sample: [{code: not_asked, forceable: true, message: "acknowledged commits may be lost: ..."}]
primary_floor_lsn:
  description: The lost primary's last checkpoint, read from its pod while PostgreSQL there is down (a lower bound of
    the WAL it wrote).
  returned: when the lost primary's pod answered
  type: str
  sample: 0/7000060
gap_bytes:
  description: How much less WAL than the most advanced standby the candidate received.
  returned: when the primary was confirmed lost
  type: int
  sample: 0
lossless:
  description: Whether every acknowledged commit is shown to be on the candidate (see the rule in the description).
  returned: when the primary was confirmed lost
  type: bool
  sample: true
loss_assessment:
  description: Why commits cannot, or may, be lost, naming the standbys counted and those that could not be asked.
  returned: when the primary was confirmed lost
  type: str
probes:
  description: The probes of the primary (time from the first, whether it was alive, what it answered).
  returned: when the primary was confirmed lost
  type: list
  elements: dict
findings:
  description: The messages of RV(refusals), or why there was nothing to fail over, or the interrupted failover that the run finished.
  returned: when the primary was confirmed lost, there was nothing to do, or an interrupted failover was finished
  type: list
  elements: str
steps:
  description: Each step run, in order, with its duration.
  returned: always
  type: list
  elements: dict
plan:
  description: The steps of a failover with what each does.
  returned: always
  type: list
  elements: dict
duration_ms:
  description: Milliseconds the run took.
  returned: always, a refusal included
  type: int
converged:
  description: What was done to finish a failover that was interrupted after it had written the record.
  returned: when an interrupted failover was finished
  type: list
  elements: str
  sample: ["promoted postgres-1 (epoch 2)", "updated Service postgres-rw"]
lease:
  description: The lease of the operation that holds the cluster, when the run was refused because of it.
  returned: when another operation holds the lease
  type: dict
notes:
  description: Other things worth knowing.
  returned: always
  type: list
  elements: str
"""

import time
from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _inputs
from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _permissions
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ClusterError, backend_from_params
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._connection import (
    connection_argument_spec,
    new_cluster_module,
    members_from_params,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._failover import Failover, FailoverFailed, FailoverOptions
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._procedure import Timeouts

POSITIVE_OPTIONS = ("probes", "exec_timeout", "stop_timeout", "promote_timeout", "rejoin_timeout", "lease_seconds")

# What a valid value of each option is, beyond its type; the shared options are checked too.
OPTION_CHECKS = {
    **{name: _inputs.integer(1) for name in POSITIVE_OPTIONS},
    "confirm_seconds": _inputs.integer(0),
    "max_lag_bytes": _inputs.integer(0),
    "candidate": _inputs.pod_name,
}


def argument_spec() -> dict[str, Any]:
    spec = connection_argument_spec()
    spec.update(
        candidate={"type": "str"},
        probes={"type": "int", "default": 3},
        confirm_seconds={"type": "int", "default": 10},
        max_lag_bytes={"type": "int", "default": 0},
        force={"type": "bool", "default": False},
        exec_timeout={"type": "int", "default": 10},
        stop_timeout={"type": "int", "default": 60},
        promote_timeout={"type": "int", "default": 60},
        rejoin_timeout={"type": "int", "default": 120},
        lease_seconds={"type": "int", "default": 30},
    )
    return spec


def cross_option_problems(params: dict[str, Any]) -> list[str]:
    """Options that are valid alone but not together."""
    probes, confirm = params.get("probes", 3), params.get("confirm_seconds", 10)
    if probes > 1 and confirm == 0:
        # Probes back to back confirm nothing: a primary that restarts would be taken for lost.
        return [
            f"confirm_seconds=0 with probes={probes} asks the primary {probes} times at once, which confirms nothing: "
            "give confirm_seconds of 1 or more, or probes=1 to probe once."
        ]
    return []


def main() -> None:
    module = new_cluster_module(argument_spec(), OPTION_CHECKS)
    params = module.params
    problems = cross_option_problems(params)
    if problems:
        module.fail_json(msg=" ".join(problems))
    timeouts = Timeouts(
        exec=float(params["exec_timeout"]),
        stop=float(params["stop_timeout"]),
        promote=float(params["promote_timeout"]),
        rejoin=float(params["rejoin_timeout"]),
    )
    options = FailoverOptions(
        candidate=params["candidate"],
        probes=params["probes"],
        confirm_seconds=float(params["confirm_seconds"]),
        max_lag_bytes=params["max_lag_bytes"],
        force=params["force"],
    )
    started = time.monotonic()
    try:
        backend = backend_from_params(params, fail=module.fail_json)
        _permissions.require(backend, members_from_params(params), _permissions.OPERATE, "a failover")
        failover = Failover(backend, members_from_params(params), timeouts, lease_seconds=float(params["lease_seconds"]))
        result = failover.run(options, check_mode=module.check_mode)
    except FailoverFailed as exc:
        failed = dict(exc.result, duration_ms=int(round((time.monotonic() - started) * 1000)))
        failed.pop("diff", None)
        module.fail_json(msg=str(exc), **failed)
    except ClusterError as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
