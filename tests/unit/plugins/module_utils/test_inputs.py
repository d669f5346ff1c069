# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every checked input of the role and of the modules, with values that pass beside values that are refused.

A value counts as accepted when both real gates let it through: Ansible's own argument spec
validator (what validate_argument_spec and AnsibleModule run) over the role's
``meta/argument_specs.yml`` or the module's ``argument_spec()``, and then the collection's checks
(the role's preflight filter, the modules' option checks). The walking tests fail when an input
that is checked (choices, a type other than str, or a check of ours) has no passing or no failing
case here.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.dbonk8s.postgresql.plugins.filter.inputs import pg_cluster_input_errors
from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _inputs, _role_inputs
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._connection import CONNECTION_CHECKS, input_problems
from ansible_collections.dbonk8s.postgresql.plugins.modules import pg_failover, pg_replication_info, pg_switchover

ROLE = pathlib.Path(__file__).resolve().parents[4] / "roles" / "pg_cluster"
ROLE_SPEC = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
MAX_MEMBERS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__pg_cluster_max_members"]


@dataclasses.dataclass(frozen=True)
class With:
    """A value given together with other variables that it is judged beside."""

    value: Any
    others: dict


def case(value: Any, **others: Any) -> With:
    return With(value, others)


# The role's variables as a deployment has them: the defaults, with templated ones made concrete.
ROLE_BASE: dict[str, Any] = {
    name: spec.get("default") for name, spec in ROLE_SPEC.items() if not (isinstance(spec.get("default"), str) and "{{" in spec["default"])
}
ROLE_BASE.update(
    pg_cluster_manifest_dir="/work/build/manifests",
    pg_cluster_bin_dir="/root/.local/bin",
    pg_cluster_kind_state_dir="/root/.local/share/dbonk8s/postgres-cluster",
    pg_cluster_kind_archive_host_path="/root/.local/share/dbonk8s/postgres-cluster/wal-archive",
    pg_cluster_kubeconfig="/root/.kube/config",
    pg_cluster_archive_mode="host_path",
)

# variable -> (values that must be accepted, values that must be refused). Strings are what
# `-e name=value` passes; lists and mappings what a vars file or JSON -e passes.
ROLE_CASES: dict[str, tuple[list, list]] = {
    "pg_cluster_state": (["present", "absent"], ["gone", ""]),
    "pg_cluster_target": (["kind", case("existing", pg_cluster_archive_mode="none")], ["cloud"]),
    "pg_cluster_render_only": ([True, "yes", "false"], ["maybe"]),
    "pg_cluster_manifest_dir": (["/tmp/manifests", "build/manifests"], [""]),
    "pg_cluster_kubernetes_version": (["1.34.0", "1.25.0", "1.37.2"], ["1.20.0", "1.24.9", "v1.34.0", "1.34", "1.34.0\n"]),
    "pg_cluster_bin_dir": (["/usr/local/bin"], [""]),
    "pg_cluster_container_engine": (["auto", "docker", "podman"], ["containerd"]),
    "pg_cluster_container_engine_timeout": ([10, "1"], [0, "abc", "1.5"]),
    "pg_cluster_kind_name": (["postgres-cluster", "a"], ["Postgres", "-a", "a" * 51, "a_b"]),
    "pg_cluster_kind_workers": ([0, "3"], [-1, "three"]),
    "pg_cluster_kind_node_image": (["kindest/node:v1.34.0@sha256:" + "7" * 64], ["kindest/node v1.34.0", "Kindest/Node"]),
    "pg_cluster_kind_state_dir": (["/srv/kind"], [""]),
    "pg_cluster_kind_archive_host_path": (["/srv/archive"], [""]),
    "pg_cluster_kubeconfig": (["/root/.kube/config", "kubeconfig"], [""]),
    "pg_cluster_namespace": (["postgres", "team-a", "a" * 63], ["", "Team", "a" * 64, "a.b"]),
    "pg_cluster_name": (["postgres", "pg-1", "a" * 52], ["", "Postgres", "1pg", "a" * 53, "pg_1"]),
    "pg_cluster_members": ([1, "3", MAX_MEMBERS], [0, "0", MAX_MEMBERS + 1, 100000, "abc", "2.5", True]),
    "pg_cluster_image": (
        ["postgres:15.14-alpine", "registry.example.com:5000/db/postgres:15", "postgres@sha256:" + "a" * 64, "localhost/pg"],
        ["postgres 15", "Postgres:15", "postgres:", "postgres:15:16", ""],
    ),
    "pg_cluster_image_pull_policy": (["Always", "IfNotPresent", "Never"], ["always", "Sometimes"]),
    "pg_cluster_storage_class": (["", "standard", "fast.ssd-1"], ["Fast_SSD", "fast ssd", "-fast"]),
    "pg_cluster_storage_size": (["10Gi", "500M", "1e9", "1.5Ti"], ["10 GB", "lots", "0", "-1Gi", "10gi"]),
    "pg_cluster_timezone": (
        ["Asia/Tokyo", "UTC", "Etc/GMT-9", "JST-9", "EST5EDT,M3.2.0,M11.1.0", "<+09>-9"],
        ["Mars/Olympus", "Asia\\Tokyo", "UTC'\nlog_directory = '/tmp", ""],
    ),
    "pg_cluster_wal_segment_size_mb": ([4, "16", 1024], [3, 2048, "four"]),
    "pg_cluster_sync_mode": (["any", "first", "off"], ["all", ""]),
    "pg_cluster_sync_count": ([1, "2", case(5, pg_cluster_sync_mode="off")], [0, 3, "abc"]),
    "pg_cluster_archive_mode": (
        ["host_path", "none", "pvc", case("none", pg_cluster_target="existing")],
        ["s3", case("host_path", pg_cluster_target="existing")],
    ),
    "pg_cluster_archive_storage_class": (["", "nfs-client"], ["NFS"]),
    "pg_cluster_archive_size": (["20Gi", "1"], ["20 Gi", "0"]),
    "pg_cluster_archive_node_path": (["/var/local/dbonk8s/wal-archive"], ["", "var/local"]),
    "pg_cluster_superuser": (["postgres", "admin_1", "_dba"], ["Postgres", "1admin", "pg_admin", "public", "none", "all", "dba;drop", case("replicator")]),
    "pg_cluster_replication_user": (["replicator", "repl"], ["pg_repl", "repl user", "public", case("postgres")]),
    "pg_cluster_password_length": ([16, "32", 1024], [15, 1025, "long"]),
    "pg_cluster_resources": (
        [
            {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
            {"requests": {"cpu": 1, "memory": "512Mi"}, "limits": {"cpu": "1.5", "memory": "1e9"}},
            {"limits": {"memory": "2Gi"}},
            {"requests": {"cpu": "1000m"}, "limits": {"cpu": "1"}},
        ],
        [
            {"requests": {"cpu": "lots"}},
            {"requests": {"cpu": "500m"}, "limits": {"memory": "1 GB"}},
            {"requests": {"cpu": "4"}, "limits": {"cpu": "2"}},
            {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
            {"request": {"cpu": "1"}},
            {"requests": "cpu=1"},
            "requests=cpu",
            "not a dict",
        ],
    ),
    "pg_cluster_postgresql_parameters": (
        [
            {},
            {"work_mem": "64MB", "shared_buffers": "256MB", "maintenance_work_mem": "1GB"},
            {"jit": "on", "random_page_cost": 1.1, "max_parallel_workers": 8, "log_statement": "ddl"},
            {"autovacuum": False, "search_path": '"$user", public', "auto_explain.log_min_duration": "1s"},
            {"application_name": "it's quoted\\"},
        ],
        [
            {"work_mem": "4MB'\nlog_directory = '/tmp"},
            {"bad name": "1"},
            {"synchronous_standby_names": ""},
            {"archive_command": "/bin/true"},
            {"Port": 5433},
            {"dbonk8s.members": "x"},
            {"work_mem": ["64MB"]},
            {"work_mem": None},
            "work_mem=64MB",
        ],
    ),
    "pg_cluster_client_cidrs": (
        [[], ["192.0.2.0/24", "0.0.0.0/0", "2001:db8::/32", "::/0", "fd00::10.0.0.0/104"], "192.0.2.0/24", "192.0.2.0/24,198.51.100.7/32"],
        [["not-a-cidr"], ["192.0.2.0/24", "10.0.0.0/33"], ["2001:db8::/129"], ["1::2::3/64"], ["192.0.2.1"], ["010.0.0.0/8"], "192.0.2.0/24,nope"],
    ),
    "pg_cluster_client_namespace_labels": (
        [[], [{"team": "app"}, {"kubernetes.io/metadata.name": "web"}], [{"tier": ""}]],
        [[{"team": "a b"}], [{"Team!": "app"}], ["team=app"], {"team": "app"}, [{"team": "x" * 64}]],
    ),
    "pg_cluster_client_pod_labels": (
        [[], [{"app.kubernetes.io/name": "web", "role": "client"}]],
        [[{"app": "web,role!=x"}], [{"": "web"}], [{"example.com/": "x"}]],
    ),
    "pg_cluster_spread": (
        ["preferred", "required", case("required", pg_cluster_members=3, pg_cluster_kind_workers=3)],
        ["always", case("required", pg_cluster_kind_workers=2)],
    ),
    "pg_cluster_wait_timeout": ([600, "1"], [0, "ten"]),
    "pg_cluster_namespace_create": (
        [
            True,
            case(False, pg_cluster_target="existing", pg_cluster_archive_mode="pvc"),
            case("no", pg_cluster_target="existing", pg_cluster_archive_mode="none"),
        ],
        ["maybe", False, case(False, pg_cluster_target="existing", pg_cluster_archive_mode="none", pg_cluster_namespace_manage=True)],
    ),
    "pg_cluster_namespace_manage": (
        [True, "no", case(False, pg_cluster_namespace_create=False, pg_cluster_target="existing", pg_cluster_archive_mode="none")],
        ["maybe"],
    ),
    "pg_cluster_delete_volumes": ([True, "no"], ["maybe"]),
    "pg_cluster_delete_kind_cluster": ([False, case(True, pg_cluster_delete_volumes=True), case("yes", pg_cluster_delete_volumes="true")], ["maybe", True]),
}


def role_refusals(name: str, given: Any) -> list[str]:
    """What the role says about ``name=given`` beside the base values: argument spec errors, then the preflight's."""
    value, others = (given.value, given.others) if isinstance(given, With) else (given, {})
    values = {**ROLE_BASE, **others, name: value}
    validated = ArgumentSpecValidator(ROLE_SPEC).validate(values)
    if validated.error_messages:
        return validated.error_messages
    return pg_cluster_input_errors(values, MAX_MEMBERS)


def role_params() -> list:
    return [
        pytest.param(name, value, accepted, id=f"{name}-{'ok' if accepted else 'bad'}-{index}")
        for name, (valid, invalid) in ROLE_CASES.items()
        for accepted, values in ((True, valid), (False, invalid))
        for index, value in enumerate(values)
    ]


@pytest.mark.parametrize("name, value, accepted", role_params())
def test_role_variable(name: str, value: Any, accepted: bool) -> None:
    refusals = role_refusals(name, value)
    if accepted:
        assert refusals == []
    else:
        assert refusals, f"{name}={value!r} was accepted"
        assert any(name in refusal for refusal in refusals), refusals


def test_the_base_values_are_accepted() -> None:
    assert ArgumentSpecValidator(ROLE_SPEC).validate(ROLE_BASE).error_messages == []
    assert pg_cluster_input_errors(ROLE_BASE, MAX_MEMBERS) == []


def preflight_checked(name: str) -> bool:
    """Whether the preflight has a rule for ``name``: a value no rule could accept is refused by name."""
    return any(name in problem for problem in pg_cluster_input_errors({**ROLE_BASE, name: "\n\0 \u2603"}, MAX_MEMBERS))


def test_every_checked_role_variable_has_a_passing_and_a_failing_case() -> None:
    checked = [name for name, spec in ROLE_SPEC.items() if spec.get("choices") or spec.get("type", "str") != "str" or preflight_checked(name)]
    assert len(checked) > 30
    missing = [name for name in checked if not (ROLE_CASES.get(name, ([], []))[0] and ROLE_CASES.get(name, ([], []))[1])]
    assert missing == []


def test_every_variable_the_preflight_checks_is_passed_to_it() -> None:
    preflight = (ROLE / "tasks" / "preflight.yml").read_text()
    passed = set(re.findall(r"'(pg_cluster_[a-z_]+)': pg_cluster_[a-z_]+", preflight))
    checked = {name for name in ROLE_SPEC if preflight_checked(name)}
    assert checked and checked <= passed


def test_a_value_that_is_not_checked_is_not_refused() -> None:
    # The walk above relies on unchecked variables staying silent under a hostile value.
    assert not preflight_checked("pg_cluster_context")


# --- modules ---------------------------------------------------------------------------------

MODULES = {"pg_switchover": pg_switchover, "pg_failover": pg_failover, "pg_replication_info": pg_replication_info}

CONNECTION_CASES: dict[str, tuple[list, list]] = {
    "kubeconfig": (["/root/.kube/config"], [""]),
    "validate_certs": ([True, "no"], ["sometimes"]),
    "ca_cert": (["/etc/ssl/ca.pem"], [""]),
    "client_cert": (["/etc/ssl/client.pem"], [""]),
    "client_key": (["/etc/ssl/client.key"], [""]),
    "namespace": (["postgres", "team-a"], ["", "Postgres", "a" * 64, "ns;rm"]),
    "statefulset": (["postgres", "pg-main"], ["", "Postgres", "pg_main"]),
    "label_selector": (
        [{"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "postgres"}, "app=postgres"],
        [{"app": "postgres,role!=x"}, {"app in (a)": "x"}, "app"],
    ),
    "container": (["postgres"], ["", "Postgres"]),
}

MODULE_CASES: dict[str, dict[str, tuple[list, list]]] = {
    "pg_switchover": {
        "candidate": (["postgres-1", "pg-main-12"], ["", " ", "postgres", "Postgres-1", "postgres-01", "postgres-1;x"]),
        "max_lag_bytes": ([0, "16777216"], [-1, "lots"]),
        "wait_for_rejoin": ([False, "yes"], ["perhaps"]),
        **{name: ([1, "30"], [0, -5, "soon"]) for name in pg_switchover.TIMEOUT_OPTIONS},
    },
    "pg_failover": {
        "candidate": (["postgres-2"], ["", "postgres-"]),
        "probes": ([1, "5"], [0, "many"]),
        "confirm_seconds": ([10, "30", case(0, probes=1)], [-1, "soon", 0]),
        "max_lag_bytes": ([0, 1048576], [-1]),
        "force": ([False, "true"], ["maybe"]),
        **{name: ([1, "60"], [0, "never"]) for name in pg_failover.POSITIVE_OPTIONS if name != "probes"},
    },
    "pg_replication_info": {
        "exec_timeout": ([15, "1"], [0, "quick"]),
        "wait_for": (
            [{"min_streaming": 2}, {"min_sync": "1", "timeout": 0}, {"max_lag_bytes": 0, "interval": "1"}],
            [{"min_streaming": "abc"}, {"min_streaming": -1}, {"interval": 0}, {"timeout": "long"}, {"unknown": 1}],
        ),
    },
}


def module_refusals(module_name: str, name: str, given: Any) -> list[str]:
    """What the module says about ``name=given``: argument spec errors, then its option checks."""
    module = MODULES[module_name]
    value, others = (given.value, given.others) if isinstance(given, With) else (given, {})
    params = {**others, name: value}
    validated = ArgumentSpecValidator(module.argument_spec()).validate(params)
    if validated.error_messages:
        return validated.error_messages
    validated_params = validated.validated_parameters
    problems = input_problems(validated_params, {**CONNECTION_CHECKS, **getattr(module, "OPTION_CHECKS", {})})
    if module_name == "pg_replication_info" and validated_params.get("wait_for"):
        problems += input_problems({f"wait_for.{key}": item for key, item in validated_params["wait_for"].items()}, module.WAIT_FOR_CHECKS)
    if module_name == "pg_failover" and not problems:
        problems += pg_failover.cross_option_problems(validated_params)
    return problems


def module_params() -> list:
    return [
        pytest.param(module_name, name, value, accepted, id=f"{module_name}-{name}-{'ok' if accepted else 'bad'}-{index}")
        for module_name in MODULES
        for name, (valid, invalid) in {**CONNECTION_CASES, **MODULE_CASES[module_name]}.items()
        for accepted, values in ((True, valid), (False, invalid))
        for index, value in enumerate(values)
    ]


@pytest.mark.parametrize("module_name, name, value, accepted", module_params())
def test_module_option(module_name: str, name: str, value: Any, accepted: bool) -> None:
    refusals = module_refusals(module_name, name, value)
    if accepted:
        assert refusals == []
    else:
        assert refusals, f"{module_name} {name}={value!r} was accepted"
        assert any(name.split(".")[0] in refusal or "required" in refusal for refusal in refusals), refusals


@pytest.mark.parametrize("module_name", MODULES)
def test_every_checked_module_option_has_a_passing_and_a_failing_case(module_name: str) -> None:
    module = MODULES[module_name]
    checks = {**CONNECTION_CHECKS, **getattr(module, "OPTION_CHECKS", {})}
    checked = [name for name, spec in module.argument_spec().items() if spec.get("choices") or spec.get("type", "str") != "str" or name in checks]
    cases = {**CONNECTION_CASES, **MODULE_CASES[module_name]}
    missing = [name for name in checked if not (cases.get(name, ([], []))[0] and cases.get(name, ([], []))[1])]
    assert missing == []


# --- the checks themselves, where a table above does not reach -----------------------------------


@pytest.mark.parametrize(
    "text, number",
    [("10Gi", 10 * 2**30), ("500m", 0.5), ("2", 2), ("1e3", 1000), ("1.5Ti", 1.5 * 2**40), (".5", 0.5), ("100k", 100000), (3, 3)],
)
def test_quantities_are_read_as_kubernetes_reads_them(text: Any, number: float) -> None:
    assert float(_inputs.parse_quantity(text)) == pytest.approx(number)


@pytest.mark.parametrize("text", ["", "1 Gi", "1gi", "-1", "1.2.3", "Gi", True, None])
def test_what_is_no_quantity_is_refused(text: Any) -> None:
    with pytest.raises(ValueError):
        _inputs.parse_quantity(text)


def test_a_time_zone_is_checked_only_for_its_form_without_a_database() -> None:
    assert _inputs.timezone("Mars/Olympus", known=None) is None
    assert _inputs.timezone("Mars/Olympus", known=lambda name: False) is not None
    assert _inputs.timezone("Mars'x", known=None) is not None


# --- changes the API refuses on a running StatefulSet -------------------------------------------


def statefulset(size: str = "10Gi", storage_class: str | None = None, service: str = "postgres") -> dict:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "postgres", "namespace": "postgres"},
        "spec": {
            "serviceName": service,
            "podManagementPolicy": "OrderedReady",
            "replicas": 3,
            "volumeClaimTemplates": [{"metadata": {"name": "pgdata"}, "spec": spec}],
        },
    }


@pytest.mark.parametrize(
    "live, rendered",
    [
        ({}, statefulset()),
        (statefulset(), statefulset()),
        (statefulset("10Gi"), statefulset("10240Mi")),
        (statefulset(storage_class="fast"), statefulset(storage_class="fast")),
        (statefulset(), dict(statefulset(), spec=dict(statefulset()["spec"], replicas=5))),
    ],
)
def test_allowed_statefulset_updates_pass(live: dict, rendered: dict) -> None:
    assert _role_inputs.statefulset_change_errors(live, rendered) == []


@pytest.mark.parametrize(
    "live, rendered, variable",
    [
        (statefulset("10Gi"), statefulset("20Gi"), "pg_cluster_storage_size=20Gi differs from 10Gi"),
        (statefulset(), statefulset(storage_class="fast"), "pg_cluster_storage_class='fast' differs from ''"),
        (statefulset(storage_class="fast"), statefulset(storage_class="slow"), "pg_cluster_storage_class='slow' differs from 'fast'"),
        (statefulset(service="postgres"), statefulset(service="other"), "pg_cluster_name would change serviceName"),
    ],
)
def test_updates_the_api_refuses_are_named(live: dict, rendered: dict, variable: str) -> None:
    problems = _role_inputs.statefulset_change_errors(live, rendered)
    assert len(problems) == 1 and variable in problems[0], problems
