# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster backend of ``transport: local``: a cluster run by the local pod runtime.

The runtime directory holds ``runtime.json`` (``exec_argv``, ``namespace``, ``statefulset``) and
the API-shaped objects under ``api/`` (``_local_api.LocalApiStore``). Exec runs the runtime's own
exec command as ``exec_argv + [pod, "--"] + argv``; its exit code is the command's, except 255 with
a ``localpods:`` message, which means the pod or its container is not running.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ApiUnavailable,
    ClusterBackend,
    ClusterError,
    Conflict,
    ExecResult,
    ExecTimeout,
    NotFound,
    PodUnavailable,
    StdinLine,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._local_api import LocalApiError, LocalApiStore

RUNTIME_FILE = "runtime.json"
POD_UNAVAILABLE_RC = 255
POD_UNAVAILABLE_PREFIX = "localpods:"


def load_runtime(runtime_dir: str | None) -> dict[str, Any]:
    if not runtime_dir:
        raise ApiUnavailable("transport local needs local_runtime_dir (the directory of a running local pod runtime)")
    path = os.path.join(runtime_dir, RUNTIME_FILE)
    if not os.path.isdir(runtime_dir):
        raise ApiUnavailable(f"local runtime directory {runtime_dir} does not exist (is the local pod runtime running?)")
    try:
        with open(path, encoding="utf-8") as runtime_file:
            runtime = json.load(runtime_file)
    except FileNotFoundError:
        raise ApiUnavailable(f"{path} not found: {runtime_dir} is not the directory of a local pod runtime") from None
    except (OSError, ValueError) as exc:
        raise ApiUnavailable(f"cannot read {path}: {exc}") from None
    exec_argv = runtime.get("exec_argv") if isinstance(runtime, dict) else None
    if not isinstance(exec_argv, list) or not exec_argv or not all(isinstance(arg, str) for arg in exec_argv):
        raise ApiUnavailable(f"{path} has no usable exec_argv (a non-empty list of strings)")
    return runtime


class LocalBackend(ClusterBackend):
    transport = "local"

    def __init__(self, runtime_dir: str | None, namespace: str, container: str = "postgres") -> None:
        super().__init__(namespace, container)
        self.runtime = load_runtime(runtime_dir)
        self.runtime_dir = runtime_dir
        self.store = LocalApiStore(os.path.join(runtime_dir, "api"))
        self.exec_argv: list[str] = list(self.runtime["exec_argv"])

    def _run(self, what: str, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except LocalApiError as exc:
            if exc.status == 404:
                raise NotFound(f"{what} not found", status=404) from None
            if exc.status == 409:
                raise Conflict(f"{what} changed concurrently ({exc.status} {exc.reason}): {exc.message}", status=409) from None
            raise ClusterError(f"{what}: {exc}", status=exc.status) from None
        except OSError as exc:
            raise ApiUnavailable(f"local runtime store {self.store.root}: {exc}") from None

    def _get(self, kind: str, name: str) -> dict:
        obj = self._run(f"{kind} {self.namespace}/{name}", self.store.get, kind, self.namespace, name)
        if obj is None:
            raise NotFound(f"{kind} {self.namespace}/{name} not found")
        return obj

    # -- primitives ----------------------------------------------------------------------------

    def check_namespace(self) -> None:
        if self.namespace not in self.store.namespaces():
            raise NotFound(f"namespace {self.namespace} not found")

    def get_statefulset(self, name: str) -> dict:
        return self._get("StatefulSet", name)

    def list_pods(self, label_selector: dict[str, str] | None) -> list[dict]:
        return self._run(f"pods in namespace {self.namespace}", self.store.list, "Pod", self.namespace, label_selector)

    def get_configmap(self, name: str) -> dict:
        return self._get("ConfigMap", name)

    def replace_configmap(self, configmap: dict) -> dict:
        name = configmap["metadata"]["name"]
        obj = {"apiVersion": "v1", "kind": "ConfigMap", **configmap}
        obj["metadata"] = {**configmap["metadata"], "namespace": self.namespace}
        return self._run(f"ConfigMap {self.namespace}/{name}", self.store.replace, obj)

    def patch_configmap(self, name: str, patch: dict) -> dict:
        return self._run(f"ConfigMap {self.namespace}/{name}", self.store.patch_merge, "ConfigMap", self.namespace, name, patch)

    def get_service(self, name: str) -> dict:
        return self._get("Service", name)

    def patch_service(self, name: str, patch: dict) -> dict:
        return self._run(f"Service {self.namespace}/{name}", self.store.patch_merge, "Service", self.namespace, name, patch)

    def patch_pod_labels(self, pod_name: str, labels: dict[str, str | None]) -> dict:
        return self._run(
            f"pod {self.namespace}/{pod_name}", self.store.patch_merge, "Pod", self.namespace, pod_name, {"metadata": {"labels": labels}}
        )

    def exec(self, pod_name: str, argv: list[str], timeout: float, stdin: StdinLine | None = None) -> ExecResult:
        command = self.exec_argv + [pod_name, "--"] + list(argv)
        # A pipe the backend owns (not Popen's): communicate() would close Popen's stdin at once.
        read_end, write_end = os.pipe() if stdin is not None else (subprocess.DEVNULL, None)
        try:
            process = subprocess.Popen(command, stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            if write_end is not None:
                os.close(write_end)
            raise ApiUnavailable(f"cannot run the local runtime's exec command {self.exec_argv[0]}: {exc}") from None
        finally:
            if write_end is not None:
                os.close(read_end)
        if stdin is not None and write_end is not None:
            threading.Thread(target=_feed, args=(stdin, write_end, timeout), daemon=True).start()
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # As a client of the API would: give up on the session and go. The command may be
            # frozen with the pod and hold the pipes, so neither it nor its output is waited for.
            process.kill()
            threading.Thread(target=_reap, args=(process,), daemon=True).start()
            raise ExecTimeout(f"exec in pod {pod_name}: no exit status within {timeout:g}s") from None
        finally:
            if stdin is not None:
                stdin.close()
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if process.returncode == POD_UNAVAILABLE_RC and stderr.startswith(POD_UNAVAILABLE_PREFIX):
            raise PodUnavailable(f"pod {pod_name} is not available for exec: {stderr.strip()}")
        return ExecResult(rc=process.returncode, stdout=stdout, stderr=stderr)


def _reap(process: subprocess.Popen) -> None:
    process.communicate()


def _feed(stdin: StdinLine, write_end: int, timeout: float) -> None:
    line = stdin.wait(timeout)
    try:
        os.write(write_end, ((line or "") + "\n").encode("utf-8"))
    except OSError:
        pass  # the command ended without reading it
    finally:
        os.close(write_end)
