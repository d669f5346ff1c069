# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_switchover and pg_failover against the fake Kubernetes API server: every bad input ends in a
clean failure message, and a refused run writes nothing (only GET requests, no ctl.sh in a pod)."""

from __future__ import annotations

import pytest

from ansible_collections.dbonk8s.postgresql.plugins.modules import pg_failover, pg_switchover

MODULES = {"pg_switchover": pg_switchover, "pg_failover": pg_failover}


CASES = [
    ("pg_switchover", {"namespace": "nowhere"}, "namespace nowhere not found"),
    ("pg_switchover", {"statefulset": "nope"}, "StatefulSet nope not found in namespace postgres"),
    ("pg_switchover", {"api_key": "wrong"}, "rejected the credentials (401 Unauthorized)"),
    ("pg_switchover", {"stop_timeout": 0}, "stop_timeout=0 must be a whole number of at least 1."),
    ("pg_switchover", {"max_lag_bytes": -1}, "max_lag_bytes=-1 must be a whole number of at least 0."),
    ("pg_switchover", {"candidate": " "}, "candidate=' ' must name a member pod, such as postgres-1."),
    ("pg_switchover", {"candidate": "postgres-9"}, "candidate postgres-9 is not a member of the cluster (postgres-0, postgres-1, postgres-2)"),
    ("pg_failover", {"namespace": "nowhere"}, "namespace nowhere not found"),
    ("pg_failover", {"statefulset": "nope"}, "StatefulSet nope not found in namespace postgres"),
    ("pg_failover", {"api_key": "wrong"}, "rejected the credentials (401 Unauthorized)"),
    ("pg_failover", {"probes": 0}, "probes=0 must be a whole number of at least 1."),
    ("pg_failover", {"max_lag_bytes": -1}, "max_lag_bytes=-1 must be a whole number of at least 0."),
    ("pg_failover", {"candidate": ""}, "candidate='' must name a member pod, such as postgres-1."),
    ("pg_failover", {"confirm_seconds": 0}, "confirm_seconds=0 with probes=3 asks the primary 3 times at once"),
    ("pg_switchover", {"namespace": ""}, "namespace='' must be a DNS label"),
    ("pg_failover", {"label_selector": {"app": "postgres,role!=x"}}, "has app='postgres,role!=x', a value that must be a label value"),
]


@pytest.mark.parametrize("module, extra, message", CASES, ids=[f"{module}-{next(iter(extra))}-{i}" for i, (module, extra, _m) in enumerate(CASES)])
def test_bad_inputs_fail_cleanly_and_change_nothing(api, module, extra, message, run_in_process):
    result = run_in_process(MODULES[module], {"host": api.url, "api_key": "good-token", **extra})
    assert result["failed"] is True and result.get("changed") is not True
    assert message in result["msg"], result["msg"]
    assert {request[0] for request in api.requests} <= {"GET"}
    assert not [argv for _pod, _container, argv in api.exec_calls if argv and argv[0].endswith("ctl.sh")]
