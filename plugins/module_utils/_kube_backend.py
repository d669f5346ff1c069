# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster backend: the Kubernetes API through the ``kubernetes`` Python client.

Objects are read with ``_preload_content=False`` and parsed as the API's own JSON, so callers get
the API's own ``camelCase`` dicts, independent of the client's model classes.
Exec uses a dedicated ``ApiClient`` (``kubernetes.stream`` temporarily replaces the client's
request method while a websocket call runs, which must never race with plain API calls made from
other threads).
"""

from __future__ import annotations

import json
import re
import threading
import traceback
from typing import Any

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ApiUnavailable,
    AuthError,
    ClusterBackend,
    ClusterError,
    Conflict,
    ExecResult,
    NotFound,
    PodUnavailable,
    StdinLine,
)
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pod_exec import looks_not_running, run_session

try:
    import kubernetes
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.stream import stream as k8s_stream
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None

MERGE_PATCH = "application/merge-patch+json"
# kubernetes.stream reports a refused websocket upgrade as ApiException(status=0) whose reason is
# websocket-client's "Handshake status 403 Forbidden -+-+- {headers} -+-+- body".
_HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")
# (connect, read) seconds for plain API calls; exec has its own per-command timeout.
REQUEST_TIMEOUT = (10, 30)


def _selector_string(label_selector: dict[str, str] | None) -> str | None:
    if not label_selector:
        return None
    return ",".join(f"{key}={value}" for key, value in sorted(label_selector.items()))


def build_configuration(params: dict[str, Any]) -> Any:
    """A ``kubernetes.client.Configuration`` from the shared connection options.

    Without ``host``: kubeconfig (``kubeconfig``/``context``, else ``KUBECONFIG`` or
    ``~/.kube/config``), or the in-cluster service account when running in a pod and no kubeconfig
    option is set. With ``host`` and neither ``kubeconfig`` nor ``context``: the options alone,
    so credentials of an unrelated kubeconfig are never sent to another server. Explicit options
    override what was loaded.
    """
    configuration = kubernetes.client.Configuration()
    kubeconfig, context, host = params.get("kubeconfig"), params.get("context"), params.get("host")
    try:
        if kubeconfig or context:
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        elif not host:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                kubernetes.config.load_kube_config(client_configuration=configuration)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = kubeconfig or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
        raise ApiUnavailable(f"cannot load the Kubernetes client configuration from {where}: {exc}") from None
    if host:
        configuration.host = host.rstrip("/")
    if params.get("api_key"):
        configuration.api_key = {"authorization": f"Bearer {params['api_key']}"}
        configuration.api_key_prefix = {}
    if params.get("validate_certs") is not None:
        configuration.verify_ssl = params["validate_certs"]
    if params.get("ca_cert"):
        configuration.ssl_ca_cert = params["ca_cert"]
    if params.get("client_cert"):
        configuration.cert_file = params["client_cert"]
    if params.get("client_key"):
        configuration.key_file = params["client_key"]
    if params.get("proxy"):
        configuration.proxy = params["proxy"]
    # A wrong host should fail in seconds, not after urllib3's default retries with back-off.
    configuration.retries = 1
    return configuration


def _status_message(exc: Any) -> str:
    """The ``message`` of the ``v1.Status`` body the API server sends with errors."""
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return str(message)
    return str(getattr(exc, "reason", "") or exc)


class KubernetesBackend(ClusterBackend):
    def __init__(self, configuration: Any, namespace: str, container: str = "postgres") -> None:
        super().__init__(namespace, container)
        self.configuration = configuration
        self.host = configuration.host
        self._api_client = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(self._api_client)
        self.apps = kubernetes.client.AppsV1Api(self._api_client)
        self.authorization = kubernetes.client.AuthorizationV1Api(self._api_client)
        self._exec_local = threading.local()

    @classmethod
    def from_params(cls, params: dict[str, Any], namespace: str, container: str = "postgres") -> KubernetesBackend:
        return cls(build_configuration(params), namespace=namespace, container=container)

    # -- error mapping -------------------------------------------------------------------------

    def _error(self, exc: Exception, what: str) -> ClusterError:
        if isinstance(exc, ApiException):
            status = exc.status or 0
            message = _status_message(exc)
            if status == 401:
                return AuthError(f"the Kubernetes API at {self.host} rejected the credentials (401 Unauthorized) while reading {what}", status=401)
            if status == 403:
                return AuthError(f"the Kubernetes API at {self.host} forbids {what} (403 Forbidden): {message}", status=403)
            if status == 404:
                return NotFound(f"{what} not found: {message}", status=404)
            if status == 409:
                return Conflict(f"{what} changed concurrently (409 Conflict): {message}", status=409)
            if status == 0:
                return ApiUnavailable(f"cannot reach the Kubernetes API at {self.host} ({what}): {message}")
            return ClusterError(f"the Kubernetes API at {self.host} answered {status} for {what}: {message}", status=status)
        # urllib3 connection/TLS errors, socket errors: nothing reached the API server.
        return ApiUnavailable(f"cannot reach the Kubernetes API at {self.host} ({what}): {exc}")

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> dict:
        try:
            response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
            return json.loads(response.data)
        except ApiException as exc:
            raise self._error(exc, what) from None
        except ClusterError:
            raise
        except Exception as exc:  # the client raises urllib3/ssl/socket errors unwrapped
            raise self._error(exc, what) from None

    # -- primitives ----------------------------------------------------------------------------

    def check_namespace(self) -> None:
        try:
            self._call(f"namespace {self.namespace}", self.core.read_namespace, self.namespace)
        except AuthError as exc:
            # Namespaced credentials may not read Namespaces; that is no reason to fail, but a
            # rejected token (401) is.
            if exc.status == 401:
                raise

    def get_statefulset(self, name: str) -> dict:
        return self._call(f"StatefulSet {self.namespace}/{name}", self.apps.read_namespaced_stateful_set, name, self.namespace)

    def list_pods(self, label_selector: dict[str, str] | None) -> list[dict]:
        kwargs = {}
        selector = _selector_string(label_selector)
        if selector:
            kwargs["label_selector"] = selector
        result = self._call(f"pods in namespace {self.namespace}", self.core.list_namespaced_pod, self.namespace, **kwargs)
        return result.get("items") or []

    def get_configmap(self, name: str) -> dict:
        return self._call(f"ConfigMap {self.namespace}/{name}", self.core.read_namespaced_config_map, name, self.namespace)

    def replace_configmap(self, configmap: dict) -> dict:
        name = configmap["metadata"]["name"]
        return self._call(f"ConfigMap {self.namespace}/{name}", self.core.replace_namespaced_config_map, name, self.namespace, configmap)

    def patch_configmap(self, name: str, patch: dict) -> dict:
        return self._call(
            f"ConfigMap {self.namespace}/{name}", self.core.patch_namespaced_config_map, name, self.namespace, patch, _content_type=MERGE_PATCH
        )

    def get_service(self, name: str) -> dict:
        return self._call(f"Service {self.namespace}/{name}", self.core.read_namespaced_service, name, self.namespace)

    def patch_service(self, name: str, patch: dict) -> dict:
        return self._call(f"Service {self.namespace}/{name}", self.core.patch_namespaced_service, name, self.namespace, patch, _content_type=MERGE_PATCH)

    def patch_pod_labels(self, pod_name: str, labels: dict[str, str | None]) -> dict:
        return self._call(
            f"pod {self.namespace}/{pod_name}",
            self.core.patch_namespaced_pod,
            pod_name,
            self.namespace,
            {"metadata": {"labels": labels}},
            _content_type=MERGE_PATCH,
        )

    def allowed(self, verb: str, resource: str, group: str = "", subresource: str = "") -> bool | None:
        """A SelfSubjectAccessReview, as ``kubectl auth can-i`` asks; None when the review itself is refused or fails."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": self.namespace, "verb": verb, "group": group, "resource": resource, "subresource": subresource}},
        }
        try:
            answer = self._call(f"a review of {verb} {resource}", self.authorization.create_self_subject_access_review, review)
        except ClusterError:
            return None
        return bool((answer.get("status") or {}).get("allowed"))

    def _exec_api(self) -> Any:
        # One ApiClient per thread: kubernetes.stream swaps ApiClient.call_api during the call.
        api = getattr(self._exec_local, "api", None)
        if api is None:
            api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(self.configuration))
            self._exec_local.api = api
        return api

    def exec(self, pod_name: str, argv: list[str], timeout: float, stdin: StdinLine | None = None) -> ExecResult:
        try:
            session = k8s_stream(
                self._exec_api().connect_get_namespaced_pod_exec,
                pod_name,
                self.namespace,
                container=self.container,
                command=list(argv),
                stdin=stdin is not None,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            # The websocket handshake failed: kubernetes.stream reports it as status 0 with the
            # HTTP answer in the reason ("Handshake status 400 Bad Request ... container not found").
            message = _status_message(exc)
            handshake = _HANDSHAKE_STATUS.search(message)
            status = int(handshake.group(1)) if handshake else None
            if looks_not_running(message) or status == 404:
                raise PodUnavailable(f"pod {pod_name} is not available for exec: {message}", status=status) from None
            if status == 401:
                raise AuthError(f"the Kubernetes API at {self.host} rejected the credentials for exec in pod {pod_name}", status=401) from None
            if status == 403:
                raise AuthError(
                    f"the Kubernetes API at {self.host} forbids exec in pod {pod_name} (needs create on pods/exec): {message}", status=403
                ) from None
            raise ApiUnavailable(f"exec in pod {pod_name} failed to start: {message}", status=status) from None
        return run_session(session, pod_name, timeout, stdin=stdin)
