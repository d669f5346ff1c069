# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module against the fake Kubernetes API server; every bad input must end in a clean failure
message. A few tests run it as Ansible does (a separate Python process reading its arguments from a
file, checked for tracebacks); the others call main() in this process, which is much faster.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from fake_kube_api import FakeKubeApi

from ansible_collections.dbonk8s.postgresql.plugins.modules import pg_replication_info

MODULE = pg_replication_info.__file__
COLLECTIONS = os.path.normpath(os.path.join(os.path.dirname(MODULE), *[os.pardir] * 5))


def run_module(tmp_path, args: dict, check_mode: bool = False) -> dict:
    module_args = dict(args)
    if check_mode:
        module_args["_ansible_check_mode"] = True
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("K8S_AUTH_", "KUBECONFIG", "DBONK8S_"))}
    env["PYTHONPATH"] = COLLECTIONS
    env["HOME"] = str(tmp_path)  # no ~/.kube/config of the machine running the tests
    completed = subprocess.run([sys.executable, MODULE, str(args_file)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stdout + completed.stderr
    result = json.loads(completed.stdout)
    assert "exception" not in result or "kubernetes" in result.get("msg", ""), result
    return result


def kube_args(api: FakeKubeApi, **extra) -> dict:
    return {"host": api.url, "api_key": "good-token", **extra}


def test_documentation_matches_the_argspec():
    doc = yaml.safe_load(pg_replication_info.DOCUMENTATION)
    own = {name for name in pg_replication_info.argument_spec() if name not in doc["options"]}
    from ansible_collections.dbonk8s.postgresql.plugins.module_utils._connection import CONNECTION_ARGSPEC

    assert own == set(CONNECTION_ARGSPEC)  # the rest comes from the connection fragment
    wait_doc = doc["options"]["wait_for"]["suboptions"]
    wait_spec = pg_replication_info.argument_spec()["wait_for"]["options"]
    assert set(wait_doc) == set(wait_spec)
    for name, spec in wait_spec.items():
        assert wait_doc[name]["type"] == spec["type"]
        assert wait_doc[name].get("default") == spec.get("default")
    assert doc["options"]["exec_timeout"]["default"] == pg_replication_info.argument_spec()["exec_timeout"]["default"]
    yaml.safe_load(pg_replication_info.EXAMPLES)
    yaml.safe_load(pg_replication_info.RETURN)


def test_healthy_cluster_in_check_mode_changes_nothing(tmp_path, api):
    before = sorted(os.listdir(tmp_path / "api" / "postgres" / "pod"))
    result = run_module(tmp_path, kube_args(api), check_mode=True)
    assert result["changed"] is False
    assert result["cluster"]["healthy"] is True, result["cluster"]["reasons"]
    assert result["cluster"]["primary"] == "postgres-0"
    assert result["cluster"]["streaming_standbys"] == 2
    assert result["summary"][-1] == "healthy"
    assert {request[0] for request in api.requests} == {"GET"}
    assert sorted(os.listdir(tmp_path / "api" / "postgres" / "pod")) == before
    psql = api.exec_calls[0][2]
    assert psql[0] == "psql" and api.exec_calls[0][1] == "postgres"


def test_api_key_is_not_returned(tmp_path, api):
    result = run_module(tmp_path, kube_args(api))
    assert "good-token" not in json.dumps(result)


def test_wait_for_fails_naming_the_unmet_condition(tmp_path, api):
    result = run_module(tmp_path, kube_args(api, wait_for={"min_streaming": 3, "timeout": 1, "interval": 1}))
    assert result["failed"] is True
    assert result["msg"].startswith("wait_for not met within 1s: min_streaming=3 (streaming standbys: 2)")
    assert "Last observed state:" in result["msg"] and "postgres-2" in result["msg"]
    assert result["wait_for"]["met"] is False
    assert result["cluster"]["streaming_standbys"] == 2


def test_wait_for_met(api, run_in_process):
    result = run_in_process(pg_replication_info, kube_args(api, wait_for={"min_streaming": 2, "min_sync": 2, "max_lag_bytes": 0}))
    assert result["wait_for"] == {"met": True, "attempts": 1, "unmet": []}


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"namespace": "nowhere"}, "namespace nowhere not found"),
        ({"statefulset": "nope"}, "StatefulSet nope not found in namespace postgres"),
        ({"label_selector": {"app": "none"}}, "no pods found for pods matching app=none in namespace postgres"),
        ({"api_key": "wrong"}, "rejected the credentials (401 Unauthorized)"),
        ({"statefulset": "postgres", "label_selector": {"app": "x"}}, "parameters are mutually exclusive: statefulset|label_selector"),
        ({"exec_timeout": 0}, "exec_timeout=0 must be a whole number of at least 1."),
        ({"wait_for": {"min_streaming": -1}}, "wait_for.min_streaming=-1 must be a whole number of at least 0."),
        ({"transport": "local"}, "module: transport. Supported parameters include"),
    ],
)
def test_bad_inputs_fail_cleanly(api, extra, message, run_in_process):
    result = run_in_process(pg_replication_info, kube_args(api, **extra))
    assert result["failed"] is True
    assert message in result["msg"]


def test_unreachable_api(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_module(tmp_path, {"host": f"http://127.0.0.1:{port}", "api_key": "x"})
    assert result["failed"] is True
    assert result["msg"].startswith(f"cannot reach the Kubernetes API at http://127.0.0.1:{port}")


def test_no_kubeconfig_at_all(run_in_process):
    result = run_in_process(pg_replication_info, {})
    assert result["failed"] is True
    assert "cannot load the Kubernetes client configuration" in result["msg"]
