# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local backend: runtime.json, the store, and exec through the runtime's exec command.

The exec command here is a stand-in with the runtime's contract (``<pod> -- argv``, exit code of
the command, 255 + ``localpods:`` when the pod is not running); the real runtime is exercised by
tests/integration.
"""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
from fake_kube_api import seed_cluster

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ApiUnavailable,
    Conflict,
    ExecTimeout,
    NotFound,
    PodUnavailable,
    StatefulSetMembers,
    StdinLine,
    backend_from_params,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._local_api import LocalApiStore

EXEC_SCRIPT = """#!/bin/sh
pod="$1"; shift
[ "$1" = "--" ] || { echo "localpods: usage: exec POD -- ARGV" >&2; exit 255; }
shift
case "$pod" in
  postgres-2) echo "localpods: container postgres of pod $pod is not running" >&2; exit 255 ;;
esac
exec "$@"
"""


@pytest.fixture
def runtime_dir(tmp_path):
    script = tmp_path / "exec.sh"
    script.write_text(EXEC_SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "runtime.json").write_text(json.dumps({"exec_argv": [str(script)], "namespace": "postgres", "statefulset": "postgres"}))
    seed_cluster(LocalApiStore(str(tmp_path / "api")))
    return str(tmp_path)


def local(runtime_dir: str, namespace: str = "postgres"):
    return backend_from_params({"transport": "local", "local_runtime_dir": runtime_dir, "namespace": namespace})


def test_exec_passes_argv_unchanged_and_returns_the_exit_code(runtime_dir):
    backend = local(runtime_dir)
    result = backend.exec("postgres-0", ["sh", "-c", 'printf "%s|" "$0" "$1"; echo oops >&2; exit 3', "a b", "$HOME"], timeout=5)
    assert (result.rc, result.stdout, result.stderr) == (3, "a b|$HOME|", "oops\n")


def test_exec_in_a_stopped_pod_is_pod_unavailable(runtime_dir):
    with pytest.raises(PodUnavailable, match="localpods: container postgres of pod postgres-2 is not running"):
        local(runtime_dir).exec("postgres-2", ["true"], timeout=5)


def test_exit_255_without_the_runtime_prefix_is_the_command_s(runtime_dir):
    assert local(runtime_dir).exec("postgres-0", ["sh", "-c", "exit 255"], timeout=5).rc == 255


def test_exec_timeout(runtime_dir):
    with pytest.raises(ExecTimeout, match="within 0.3s"):
        local(runtime_dir).exec("postgres-0", ["sleep", "5"], timeout=0.3)


def test_member_pods_and_records(runtime_dir):
    backend = local(runtime_dir)
    assert [pod["metadata"]["name"] for pod in backend.member_pods(StatefulSetMembers(statefulset="postgres"))] == ["postgres-0", "postgres-1", "postgres-2"]
    record = backend.get_configmap("postgres-primary")
    backend.replace_configmap(dict(record, data={"primary": "postgres-1", "epoch": "2"}))
    with pytest.raises(Conflict):
        backend.replace_configmap(dict(record, data={"primary": "postgres-2", "epoch": "2"}))
    backend.patch_pod_labels("postgres-1", {"dbonk8s.io/role": "replica"})
    assert backend.list_pods({"dbonk8s.io/role": "replica"})[0]["metadata"]["name"] == "postgres-1"
    backend.patch_service("postgres-rw", {"spec": {"selector": {"statefulset.kubernetes.io/pod-name": "postgres-1"}}})
    assert backend.get_service("postgres-rw")["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "postgres-1"


def test_unknown_namespace_statefulset_and_no_pods(runtime_dir):
    with pytest.raises(NotFound, match="namespace nowhere not found"):
        local(runtime_dir, namespace="nowhere").member_pods(StatefulSetMembers(statefulset="postgres"))
    with pytest.raises(NotFound, match="StatefulSet other not found in namespace postgres"):
        local(runtime_dir).member_pods(StatefulSetMembers(statefulset="other"))
    with pytest.raises(NotFound, match="no pods found"):
        local(runtime_dir).member_pods(StatefulSetMembers(label_selector={"app": "other"}))
    with pytest.raises(NotFound):
        local(runtime_dir).get_configmap("absent")


def test_missing_runtime_dir(tmp_path):
    with pytest.raises(ApiUnavailable, match="does not exist"):
        local(str(tmp_path / "absent"))
    with pytest.raises(ApiUnavailable, match="runtime.json not found"):
        local(str(tmp_path))
    with pytest.raises(ApiUnavailable, match="needs local_runtime_dir"):
        local(None)


def test_broken_runtime_file(tmp_path):
    (tmp_path / "runtime.json").write_text("{")
    with pytest.raises(ApiUnavailable, match="cannot read"):
        local(str(tmp_path))
    (tmp_path / "runtime.json").write_text(json.dumps({"exec_argv": "localpods exec"}))
    with pytest.raises(ApiUnavailable, match="no usable exec_argv"):
        local(str(tmp_path))


def test_exec_command_missing(runtime_dir):
    os.unlink(os.path.join(runtime_dir, "exec.sh"))
    with pytest.raises(ApiUnavailable, match="cannot run the local runtime's exec command"):
        local(runtime_dir).exec("postgres-0", ["true"], timeout=5)


READ_ONE_LINE = ["sh", "-c", 'if read -r line; then echo "line:$line"; else echo "eof:$line"; fi; read -r more && echo "more:$more"; exit 0']


def test_exec_stdin_line_said_after_the_start_reaches_the_command(runtime_dir):
    line = StdinLine()
    threading.Timer(0.2, line.say, args=("go",)).start()
    result = local(runtime_dir).exec("postgres-0", READ_ONE_LINE, timeout=5, stdin=line)
    # One line, then end of input: a command reading more finds nothing.
    assert (result.rc, result.stdout) == (0, "line:go\n")


def test_exec_stdin_closed_sends_an_empty_line(runtime_dir):
    line = StdinLine()
    line.close()
    line.say("go")  # too late: the first word counts
    assert local(runtime_dir).exec("postgres-0", READ_ONE_LINE, timeout=5, stdin=line).stdout == "line:\n"


def test_exec_stdin_never_said_ends_with_the_timeout(runtime_dir):
    line = StdinLine()
    with pytest.raises(ExecTimeout):
        local(runtime_dir).exec("postgres-0", ["sh", "-c", "read -r line; exec sleep 5"], timeout=0.5, stdin=line)
    assert line.wait(0) == ""


def test_exec_without_stdin_reads_end_of_input(runtime_dir):
    assert local(runtime_dir).exec("postgres-0", READ_ONE_LINE, timeout=5).stdout == "eof:\n"
