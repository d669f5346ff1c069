# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options every module of the collection shares, mirrored by doc fragment ``connection``.

Keep ``plugins/doc_fragments/connection.py`` identical in names, types, defaults, aliases and
choices: ansible-test's validate-modules compares each module's DOCUMENTATION with its argspec,
and the unit tests compare this dict with the fragment.

The Kubernetes API options fall back to the ``K8S_AUTH_*`` environment variables that
kubernetes.core uses, so an environment set up for kubernetes.core works unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _inputs
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import StatefulSetMembers

CONNECTION_ARGSPEC: dict[str, dict[str, Any]] = {
    "kubeconfig": {"type": "path", "fallback": (env_fallback, ["K8S_AUTH_KUBECONFIG"])},
    "context": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_CONTEXT"])},
    "host": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_HOST"])},
    "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["K8S_AUTH_API_KEY"])},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"], "fallback": (env_fallback, ["K8S_AUTH_VERIFY_SSL"])},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"], "fallback": (env_fallback, ["K8S_AUTH_SSL_CA_CERT"])},
    "client_cert": {"type": "path", "aliases": ["cert_file"], "fallback": (env_fallback, ["K8S_AUTH_CERT_FILE"])},
    "client_key": {"type": "path", "aliases": ["key_file"], "no_log": False, "fallback": (env_fallback, ["K8S_AUTH_KEY_FILE"])},
    "proxy": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_PROXY"])},
    "namespace": {"type": "str", "default": "postgres"},
    # No default here, so that it can be mutually exclusive with label_selector; without either,
    # members_from_params() uses DEFAULT_STATEFULSET.
    "statefulset": {"type": "str"},
    "label_selector": {"type": "dict"},
    "container": {"type": "str", "default": "postgres"},
}

DEFAULT_STATEFULSET = "postgres"

# What a valid value of a shared option is, beyond its type (checked when it is set). An empty
# namespace is refused rather than read as the default: it would act on another cluster.
CONNECTION_CHECKS: dict[str, _inputs.Check] = {
    "namespace": _inputs.dns_label(63),
    "statefulset": _inputs.dns_label(63),
    "label_selector": _inputs.label_set,
    "container": _inputs.dns_label(63),
    **{name: _inputs.path for name in ("kubeconfig", "ca_cert", "client_cert", "client_key")},
}

CONNECTION_MUTUALLY_EXCLUSIVE = [("statefulset", "label_selector")]


def connection_argument_spec() -> dict[str, dict[str, Any]]:
    """A fresh copy of the shared options, to extend with a module's own."""
    return copy.deepcopy(CONNECTION_ARGSPEC)


def members_from_params(params: dict[str, Any]) -> StatefulSetMembers:
    """Which pods form the cluster: the StatefulSet (default ``postgres``) or a label selector."""
    selector = params.get("label_selector")
    if selector:
        return StatefulSetMembers(label_selector={str(key): str(value) for key, value in selector.items()})
    return StatefulSetMembers(statefulset=params.get("statefulset") or DEFAULT_STATEFULSET)


def input_problems(params: dict[str, Any], checks: dict[str, _inputs.Check]) -> list[str]:
    """One sentence per option set to a value that its check refuses (``option=value what is allowed.``)."""
    problems = []
    for name, check in checks.items():
        value = params.get(name)
        if value is not None:
            problem = _inputs.first_problem(name, value, check)
            if problem:
                problems.append(problem)
    return problems


def new_cluster_module(argument_spec: dict[str, Any], checks: dict[str, _inputs.Check] | None = None) -> AnsibleModule:
    """The AnsibleModule of every module of the collection: the shared option rules, check mode,
    the checks of the shared options and of ``checks`` (the module's own; it fails before any
    request when one refuses)."""
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=CONNECTION_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    problems = input_problems(module.params, {**CONNECTION_CHECKS, **(checks or {})})
    if problems:
        module.fail_json(msg=" ".join(problems))
    return module
