# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# Mirrors plugins/module_utils/_connection.py CONNECTION_ARGSPEC exactly (names, types, defaults,
# aliases, choices); tests/unit/plugins/module_utils/test_connection.py checks it.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file.
      - Without O(kubeconfig), O(context) and O(host), the in-cluster service account is used when the
        module runs in a pod, else the default kubeconfig (E(KUBECONFIG) or C(~/.kube/config)).
      - Can also be set with the E(K8S_AUTH_KUBECONFIG) environment variable.
    type: path
  context:
    description:
      - Name of a context of the kubeconfig file.
      - Can also be set with the E(K8S_AUTH_CONTEXT) environment variable.
    type: str
  host:
    description:
      - URL of the Kubernetes API server.
      - With O(host) and neither O(kubeconfig) nor O(context), no kubeconfig is read, so credentials
        must come from O(api_key) or O(client_cert) and O(client_key).
      - Can also be set with the E(K8S_AUTH_HOST) environment variable.
    type: str
  api_key:
    description:
      - Bearer token to authenticate with the API.
      - Can also be set with the E(K8S_AUTH_API_KEY) environment variable.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - Can also be set with the E(K8S_AUTH_VERIFY_SSL) environment variable.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to the CA certificate (full chain) that signed the API server's certificate.
      - Can also be set with the E(K8S_AUTH_SSL_CA_CERT) environment variable.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate to authenticate with the API.
      - Can also be set with the E(K8S_AUTH_CERT_FILE) environment variable.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the key of O(client_cert).
      - Can also be set with the E(K8S_AUTH_KEY_FILE) environment variable.
    type: path
    aliases: [key_file]
  proxy:
    description:
      - URL of an HTTP proxy for the API connection. E(HTTP_PROXY) and friends are not used.
      - Can also be set with the E(K8S_AUTH_PROXY) environment variable.
    type: str
  namespace:
    description:
      - Namespace of the cluster.
    type: str
    default: postgres
  statefulset:
    description:
      - Name of the cluster's StatefulSet; its pods C(<statefulset>-<ordinal>) matching its
        C(spec.selector) are the members.
      - When neither O(statefulset) nor O(label_selector) is set, C(postgres) is used.
      - Mutually exclusive with O(label_selector).
    type: str
  label_selector:
    description:
      - Labels (equality only) that select the member pods, instead of a StatefulSet.
      - Mutually exclusive with O(statefulset).
    type: dict
  container:
    description:
      - Container of the pods that runs PostgreSQL; commands are executed in it.
    type: str
    default: postgres
requirements:
  - kubernetes >= 24.2.0 (Python library)
notes:
  - "The credentials need, in O(namespace): C(get statefulsets.apps, list pods, get configmaps, get services, create pods/exec)
    (the StatefulSet only with O(statefulset)); reading the namespace itself is optional. Each module asks the API with
    SelfSubjectAccessReviews before its first request and refuses, naming every missing permission, before any change."
  - Commands run in the pods through pod exec as argument lists; no shell is involved.
  - Options can be set once for every module of the collection with
    C(module_defaults) and the action group C(group/dbonk8s.postgresql.cluster).
"""
