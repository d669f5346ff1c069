# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.dbonk8s.postgresql`` importable from the checkout.

``make collection`` links the checkout into ``.collections/ansible_collections/dbonk8s/postgresql``;
``ansible_collections`` is a namespace package, so adding ``.collections`` to ``sys.path`` merges it
with the collections installed in the virtualenv.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import pytest

_COLLECTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 4, ".collections")
_COLLECTIONS = os.path.normpath(_COLLECTIONS)
if os.path.isdir(os.path.join(_COLLECTIONS, "ansible_collections", "dbonk8s", "postgresql")) and _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

# The fake Kubernetes API server and the recorded statuses live with the module_utils tests.
_MODULE_UTILS_TESTS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "module_utils"))
if _MODULE_UTILS_TESTS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS_TESTS)


# Imported only now: they live in the module_utils tests' directory added to sys.path above.
from fake_kube_api import ExecScript, FakeKubeApi, seed_cluster  # noqa: E402  pylint: disable=wrong-import-position
from test_replication import primary_status, standby_status  # noqa: E402  pylint: disable=wrong-import-position

from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def api(tmp_path):
    """The fake Kubernetes API server with a healthy 3-member cluster: postgres-0 primary."""
    server = FakeKubeApi(str(tmp_path / "api")).start()
    seed_cluster(server.store)

    def answer(pod: str, container: str, argv: list[str]) -> ExecScript:
        status = primary_status() if pod == "postgres-0" else standby_status()
        return ExecScript(stdout=json.dumps(status) + "\n", rc=0)

    server.exec_handler = answer
    yield server
    server.stop()


@pytest.fixture
def run_in_process(tmp_path, capsys, monkeypatch) -> Callable[[Any, dict], dict]:
    """Runs a module's main() in this process (fast), isolated from the machine's Kubernetes
    configuration: no K8S_AUTH_*/KUBECONFIG/DBONK8S_* variables, HOME is the test's directory."""

    def run(module: Any, args: dict) -> dict:
        for variable in list(os.environ):
            if variable.startswith(("K8S_AUTH_", "KUBECONFIG", "DBONK8S_")):
                monkeypatch.delenv(variable)
        monkeypatch.setenv("HOME", str(tmp_path))
        capsys.readouterr()
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run
