# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one interface through which modules operate a cluster.

A backend is bound to one namespace and one container (the ``postgres`` container of the pods).
It hands back plain API-shaped dicts (the JSON the Kubernetes API returns, ``camelCase`` keys), so
module code reads ``pod["status"]["podIP"]`` the same way whatever implements it: the collection's
only implementation is ``_kube_backend.KubernetesBackend`` (the Kubernetes API through the
``kubernetes`` Python client); unit tests substitute their own.

Every failure is raised as a subclass of ``ClusterError`` whose message is fit for ``fail_json``;
a caller that wants to react to a particular failure catches the subclass:

* ``ApiUnavailable``   the API cannot be reached (network, TLS, configuration)
* ``AuthError``        the API rejected the credentials (401) or the permission (403)
* ``NotFound``         the object does not exist (404)
* ``Conflict``         optimistic concurrency lost: the object changed since it was read (409)
* ``PodUnavailable``   exec impossible: the pod or its container is not running
* ``ExecTimeout``      the command did not finish within its timeout (it may still run in the pod)
* ``ExecLost``         the exec channel closed without an exit status (connection lost)

Writers of operations (switchover, failover) use ``get_configmap`` + ``replace_configmap`` for the
record of the primary: ``replace_configmap`` sends the ``resourceVersion`` it read and raises
``Conflict`` when someone else wrote in between, never overwriting their change.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any, Callable

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pgtext import pod_ordinal

__all__ = [
    "ApiUnavailable",
    "AuthError",
    "ClusterBackend",
    "ClusterError",
    "Conflict",
    "ExecLost",
    "ExecResult",
    "ExecTimeout",
    "NotFound",
    "PodUnavailable",
    "StatefulSetMembers",
    "StdinLine",
    "UNORDERED",
    "backend_from_params",
    "member_ordinal",
    "pod_is_ready",
    "read_optional",
]


class ClusterError(Exception):
    """Base of every failure of a backend; ``str(error)`` is a message for the user.

    ``status`` is the HTTP status of the API answer behind the error, when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiUnavailable(ClusterError):
    pass


class AuthError(ClusterError):
    pass


class NotFound(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class PodUnavailable(ClusterError):
    pass


class ExecTimeout(ClusterError):
    pass


class ExecLost(ClusterError):
    pass


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """Outcome of a command run in a container: its own exit code and output, as text."""

    rc: int
    stdout: str
    stderr: str


class StdinLine:
    """The one line a command reads on its stdin, decided after the command started.

    The command is started at once, so that its exec round trip and its preparation overlap other
    work; ``say(line)`` sends the line when the caller knows it. ``close()``, or the exec's deadline
    with nothing said, sends an empty line, which the command reads as "no".
    """

    def __init__(self) -> None:
        self._said = threading.Event()
        self._line = ""

    def say(self, line: str) -> None:
        if "\n" in line:
            raise ValueError("one line, without a newline")
        if not self._said.is_set():
            self._line = line
            self._said.set()

    def close(self) -> None:
        self.say("")

    def wait(self, timeout: float | None) -> str | None:
        """The line once said (blocking up to ``timeout``), else None."""
        return self._line if self._said.wait(timeout) else None


@dataclasses.dataclass(frozen=True)
class StatefulSetMembers:
    """Which pods belong to the cluster: a StatefulSet name, or a label selector, or both."""

    statefulset: str | None = None
    label_selector: dict[str, str] | None = None

    def describe(self) -> str:
        if self.statefulset:
            return f"StatefulSet {self.statefulset}"
        selector = ",".join(f"{key}={value}" for key, value in sorted((self.label_selector or {}).items()))
        return f"pods matching {selector}"


#: The ordinal ``member_ordinal`` gives a name that is no StatefulSet pod name.
UNORDERED = 1 << 30


def member_ordinal(pod_name: str) -> int:
    """Ordinal of a StatefulSet pod (``postgres-2`` -> 2); names without one sort last."""
    # A broad label selector may pick up a pod that is not a StatefulSet member: order it, never
    # fail on it.
    try:
        ordinal = pod_ordinal(pod_name)
    except (TypeError, ValueError):
        ordinal = None
    return ordinal if isinstance(ordinal, int) else UNORDERED


def pod_is_ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(cond.get("type") == "Ready" and cond.get("status") == "True" for cond in conditions)


def read_optional(read: Callable[[], Any]) -> Any:
    """An object the cluster may not have (or the credentials may not read): None, not a failure.
    Credentials that are refused altogether (401) still fail."""
    try:
        return read()
    except NotFound:
        return None
    except AuthError as exc:
        if exc.status == 401:
            raise
        return None


def _select_members(pods: list[dict], members: StatefulSetMembers) -> list[dict]:
    """Keep the StatefulSet's own pods (``<name>-<ordinal>``) and order them by ordinal."""
    if members.statefulset:
        own = re.compile(re.escape(members.statefulset) + r"-\d+$")
        pods = [pod for pod in pods if own.match(pod["metadata"]["name"])]
    return sorted(pods, key=lambda pod: (member_ordinal(pod["metadata"]["name"]), pod["metadata"]["name"]))


class ClusterBackend:
    """Operations on one namespace of a cluster. Subclasses implement the ``_``-less primitives."""

    def __init__(self, namespace: str, container: str = "postgres") -> None:
        self.namespace = namespace
        self.container = container

    # -- primitives every backend implements ----------------------------------------------------

    def check_namespace(self) -> None:
        """Raise ``NotFound`` when the namespace does not exist (permission to look is optional)."""
        raise NotImplementedError

    def get_statefulset(self, name: str) -> dict:
        """The StatefulSet, or ``NotFound``."""
        raise NotImplementedError

    def list_pods(self, label_selector: dict[str, str] | None) -> list[dict]:
        raise NotImplementedError

    def get_configmap(self, name: str) -> dict:
        """The ConfigMap with ``metadata.resourceVersion``, or ``NotFound``."""
        raise NotImplementedError

    def replace_configmap(self, configmap: dict) -> dict:
        """Write the whole ConfigMap; ``Conflict`` when its ``resourceVersion`` is not current."""
        raise NotImplementedError

    def patch_configmap(self, name: str, patch: dict) -> dict:
        """JSON merge patch; a ``metadata.resourceVersion`` in the patch makes it conditional."""
        raise NotImplementedError

    def get_service(self, name: str) -> dict:
        raise NotImplementedError

    def patch_service(self, name: str, patch: dict) -> dict:
        """JSON merge patch of a Service (e.g. ``{"spec": {"selector": {...}}}``)."""
        raise NotImplementedError

    def patch_pod_labels(self, pod_name: str, labels: dict[str, str | None]) -> dict:
        """Set labels (a ``None`` value removes the label); other labels are kept."""
        raise NotImplementedError

    def exec(self, pod_name: str, argv: list[str], timeout: float, stdin: StdinLine | None = None) -> ExecResult:
        """Run ``argv`` (no shell) in the backend's container of the pod.

        Returns the command's own exit code; raises ``PodUnavailable``, ``ExecTimeout`` or
        ``ExecLost`` when there is no exit code to return. With ``stdin``, the command's stdin
        receives the line said there (and nothing else); without, it is empty.
        """
        raise NotImplementedError

    def allowed(self, verb: str, resource: str, group: str = "", subresource: str = "") -> bool | None:
        """Whether the credentials may do ``verb`` on ``resource`` in the namespace; None when the API cannot say."""
        return None

    # -- built on the primitives --------------------------------------------------------------

    def missing_permissions(self, permissions: tuple[Any, ...]) -> list[Any]:
        """The ``_permissions.Permission`` entries the API says these credentials lack (unknown ones are not counted)."""
        return [p for p in permissions if self.allowed(p.verb, p.resource, p.group, p.subresource) is False]

    def member_pods(self, members: StatefulSetMembers) -> list[dict]:
        """The cluster's pods ordered by ordinal; ``NotFound`` names what is missing."""
        return self.find_members(members)[0]

    def find_members(self, members: StatefulSetMembers) -> tuple[list[dict], dict | None]:
        """The cluster's pods ordered by ordinal, and the StatefulSet when there is one.

        With a StatefulSet, its ``spec.selector.matchLabels`` finds the pods (as the controller
        does), narrowed to names ``<statefulset>-<n>`` so that another workload that happens to
        share the labels is never operated on.
        """
        selector = dict(members.label_selector or {})
        statefulset = None
        if members.statefulset:
            try:
                statefulset = self.get_statefulset(members.statefulset)
            except NotFound:
                self._raise_if_namespace_missing()
                raise NotFound(f"StatefulSet {members.statefulset} not found in namespace {self.namespace}") from None
            match_labels = ((statefulset.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = {**match_labels, **selector}
        else:
            self._raise_if_namespace_missing()
        pods = _select_members(self.list_pods(selector or None), members)
        if not pods:
            raise NotFound(f"no pods found for {members.describe()} in namespace {self.namespace}")
        return pods, statefulset

    def _raise_if_namespace_missing(self) -> None:
        try:
            self.check_namespace()
        except NotFound:
            raise NotFound(f"namespace {self.namespace} not found") from None


def backend_from_params(params: dict[str, Any], fail: Callable[..., Any] | None = None) -> ClusterBackend:
    """Build the backend that the shared connection options (``_connection.py``) describe.

    ``fail`` is ``module.fail_json``: the backend needs the ``kubernetes`` library,
    and its absence must be reported through ``missing_required_lib``, not as an ImportError.
    """
    namespace = params.get("namespace") or "postgres"
    container = params.get("container") or "postgres"
    from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _kube_backend

    if not _kube_backend.HAS_KUBERNETES:
        from ansible.module_utils.basic import missing_required_lib

        message = missing_required_lib("kubernetes")
        if fail is None:
            raise ClusterError(message)
        fail(msg=message, exception=_kube_backend.KUBERNETES_IMPORT_ERROR)
    return _kube_backend.KubernetesBackend.from_params(params, namespace=namespace, container=container)
