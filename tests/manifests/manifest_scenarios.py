# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The render-only scenarios of tests/manifests: every member count of the acceptance (1, 3, 5)
with every synchronous mode, spread over the archive modes and the other switches of the templates.

Each scenario is an inventory host of one ansible-playbook run, its variables are host variables.
"""

from __future__ import annotations

from typing import Any, Dict

# A digest that pins the image: CKV_K8S_43 must then pass without a skip.
PINNED_IMAGE = "postgres:15.14-alpine@sha256:" + "0123456789abcdef" * 4

SCENARIOS: Dict[str, Dict[str, Any]] = {
    "m1-any": {"pg_cluster_members": 1, "pg_cluster_sync_mode": "any", "pg_cluster_archive_mode": "host_path"},
    "m1-first": {
        "pg_cluster_members": 1,
        "pg_cluster_sync_mode": "first",
        "pg_cluster_archive_mode": "pvc",
        "pg_cluster_archive_storage_class": "nfs-client",
        "pg_cluster_storage_class": "fast-ssd",
    },
    "m1-off": {"pg_cluster_members": 1, "pg_cluster_sync_mode": "off", "pg_cluster_archive_mode": "none"},
    # The role's defaults, as `ansible-playbook site.yml` renders them for kind.
    "m3-any": {},
    "m3-first": {
        "pg_cluster_members": 3,
        "pg_cluster_sync_mode": "first",
        "pg_cluster_sync_count": 2,
        "pg_cluster_archive_mode": "pvc",
        "pg_cluster_spread": "required",
        "pg_cluster_name": "db",
        "pg_cluster_namespace": "data",
        "pg_cluster_wal_segment_size_mb": 16,
    },
    "m3-off": {
        "pg_cluster_members": 3,
        "pg_cluster_sync_mode": "off",
        "pg_cluster_archive_mode": "none",
        "pg_cluster_client_cidrs": ["192.0.2.0/24", "2001:db8::/32"],
        "pg_cluster_client_namespace_labels": [{"kubernetes.io/metadata.name": "web"}],
        "pg_cluster_client_pod_labels": [{"app": "api", "tier": "backend"}],
        # The namespace-only mode: nothing cluster-scoped is rendered.
        "pg_cluster_target": "existing",
        "pg_cluster_namespace_create": False,
    },
    # Strings, as `-e pg_cluster_members=5` passes them.
    "m5-any": {"pg_cluster_members": "5", "pg_cluster_sync_mode": "any", "pg_cluster_sync_count": "2"},
    "m5-first": {
        "pg_cluster_members": 5,
        "pg_cluster_sync_mode": "first",
        "pg_cluster_sync_count": 4,
        "pg_cluster_archive_mode": "pvc",
        "pg_cluster_image": PINNED_IMAGE,
        "pg_cluster_image_pull_policy": "Always",
    },
    "m5-off": {"pg_cluster_members": 5, "pg_cluster_sync_mode": "off", "pg_cluster_archive_mode": "none"},
}

# What the role defaults to, for scenarios that do not set a variable (roles/pg_cluster/defaults).
DEFAULTS: Dict[str, Any] = {
    "pg_cluster_members": 3,
    "pg_cluster_sync_mode": "any",
    "pg_cluster_sync_count": 1,
    "pg_cluster_archive_mode": "host_path",
    "pg_cluster_name": "postgres",
    "pg_cluster_namespace": "postgres",
    "pg_cluster_spread": "preferred",
    "pg_cluster_storage_class": "",
    "pg_cluster_archive_storage_class": "",
    "pg_cluster_image": "postgres:15.14-alpine",
    "pg_cluster_image_pull_policy": "IfNotPresent",
    "pg_cluster_client_cidrs": [],
    "pg_cluster_client_namespace_labels": [],
    "pg_cluster_client_pod_labels": [],
    "pg_cluster_wal_segment_size_mb": 4,
    "pg_cluster_namespace_create": True,
}


def setting(scenario: str, variable: str) -> Any:
    """The value of a role variable in a scenario, with integers as integers."""
    value = SCENARIOS[scenario].get(variable, DEFAULTS[variable])
    return int(value) if variable in ("pg_cluster_members", "pg_cluster_sync_count", "pg_cluster_wal_segment_size_mb") else value
