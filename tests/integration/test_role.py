"""The pg_cluster role run for real by ansible-playbook: render-only, variable checks, secrets.

Every test starts ansible-playbook as a user would (site.yml at the repository root). Render-only
touches no cluster, so these run anywhere; the deployment itself is covered by molecule/kind.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "pg_cluster"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
# Ansible starts slowly on small machines; this only bounds a hung run, it asserts nothing.
RUN_TIMEOUT = 600
ENGINE_SENTENCE = (
    "kind needs a running container engine (Docker or Podman) and none answered: start Docker, "
    "or deploy to an existing cluster with -e pg_cluster_target=existing"
)
TOOLS = ("docker", "podman", "kind", "kubectl")


@dataclass
class Run:
    rc: int
    output: str


def expected_files() -> list[str]:
    return sorted(p.name.removesuffix(".j2") for p in (ROLE / "templates" / "manifests").glob("*.yaml.j2"))


@pytest.fixture(scope="module")
def tripwire(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin directory, first on PATH, whose docker/podman/kind/kubectl only record being called."""
    bin_dir = tmp_path_factory.mktemp("tripwire")
    log = bin_dir / "calls.log"
    for tool in TOOLS:
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 1\n')
        script.chmod(0o755)
    return bin_dir


def playbook(*args: str, home: Path, path_prefix: Path | None = None, playbook_file: str = "site.yml") -> Run:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        # Keeps the role's defaults under HOME (bin dir, kind state) away from the real home.
        HOME=str(home),
        PATH=os.pathsep.join(
            ([str(path_prefix)] if path_prefix else []) + [str(ANSIBLE_PLAYBOOK.parent), os.environ.get("PATH", "")]
        ),
    )
    env.pop("KUBECONFIG", None)
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), playbook_file, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return Run(done.returncode, done.stdout)


def render(manifest_dir: Path, *extra: str, home: Path, tripwire: Path | None = None) -> Run:
    return playbook(
        "-e",
        "pg_cluster_render_only=true",
        "-e",
        f"pg_cluster_manifest_dir={manifest_dir}",
        *extra,
        home=home,
        path_prefix=tripwire,
    )


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def passwords(manifest_dir: Path) -> list[str]:
    (secret,) = documents(manifest_dir / "10-secret.yaml")
    return [base64.b64decode(value).decode() for value in secret["data"].values()]


@dataclass
class Rendered:
    manifest_dir: Path
    first: Run
    second: Run
    # Kept out of the repr, so that a failing assertion does not print it.
    secret_after_first: bytes = field(repr=False)


@pytest.fixture(scope="module")
def rendered_twice(tmp_path_factory: pytest.TempPathFactory, tripwire: Path) -> Iterator[Rendered]:
    """Three members rendered twice with -v --diff, as a user re-running it would."""
    home = tmp_path_factory.mktemp("home")
    manifest_dir = tmp_path_factory.mktemp("render") / "manifests"
    first = render(manifest_dir, "-v", "--diff", home=home, tripwire=tripwire)
    assert first.rc == 0, first.output
    secret = (manifest_dir / "10-secret.yaml").read_bytes()
    second = render(manifest_dir, "-v", "--diff", home=home, tripwire=tripwire)
    yield Rendered(manifest_dir, first, second, secret)


def assert_rendered(manifest_dir: Path, members: int) -> None:
    assert sorted(p.name for p in manifest_dir.iterdir()) == expected_files()
    statefulsets = [doc for doc in documents(manifest_dir / "70-statefulset.yaml") if doc["kind"] == "StatefulSet"]
    assert [s["spec"]["replicas"] for s in statefulsets] == [members]
    assert (manifest_dir / "10-secret.yaml").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("members", [1, 5])
def test_render_only_writes_every_manifest(members: int, tmp_path: Path, tripwire: Path) -> None:
    manifest_dir = tmp_path / "manifests"
    run = render(manifest_dir, "-e", f"pg_cluster_members={members}", home=tmp_path, tripwire=tripwire)

    assert run.rc == 0, run.output
    assert_rendered(manifest_dir, members)


def test_render_only_writes_every_manifest_for_the_default_three_members(rendered_twice: Rendered) -> None:
    assert rendered_twice.first.rc == 0, rendered_twice.first.output
    assert_rendered(rendered_twice.manifest_dir, 3)


def test_render_only_touches_no_tool_engine_or_cluster(rendered_twice: Rendered, tripwire: Path) -> None:
    assert rendered_twice.first.rc == 0
    assert not (tripwire / "calls.log").exists(), (tripwire / "calls.log").read_text()


def error_message(output: str) -> str:
    """The text of the [ERROR] lines, up to the task's origin: what the user is told went wrong.

    Not the whole output: the checks of tasks/preflight.yml print every variable they check as a
    loop label, so any of those names is in the output whether its check failed or not.
    """
    errors = [part.split("\nOrigin:")[0] for part in output.split("[ERROR]:")[1:]]
    return " ".join(" ".join(errors).split())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("pg_cluster_members", "0"),
        ("pg_cluster_sync_mode", "bogus"),
        ("pg_cluster_sync_count", "3"),
        ("pg_cluster_name", "Not_A_DNS_Label"),
        # kubernetes-validate checks neither CIDRs nor quantities: the role must.
        ("pg_cluster_client_cidrs", ["not-a-cidr"]),
        ("pg_cluster_client_cidrs", ["192.0.2.0/24", "10.0.0.0/33"]),
        ("pg_cluster_client_cidrs", ["2001:db8::/129"]),
        ("pg_cluster_client_cidrs", ["1::2::3/64"]),
        ("pg_cluster_resources", {"requests": {"cpu": "lots", "memory": "1Gi"}}),
        ("pg_cluster_resources", {"requests": {"cpu": "500m"}, "limits": {"memory": "1 GB"}}),
        ("pg_cluster_storage_size", "10 GB"),
        ("pg_cluster_archive_size", "lots"),
        # Written into a quoted postgresql.conf string: a quote and a newline would add a setting.
        ("pg_cluster_timezone", "UTC'\nlog_directory = '/tmp"),
        ("pg_cluster_timezone", "Asia\\Tokyo"),
        ("pg_cluster_superuser", "Postgres"),
        ("pg_cluster_replication_user", "repl user"),
        ("pg_cluster_postgresql_parameters", {"work_mem": "4MB'\nlog_directory = '/tmp"}),
        ("pg_cluster_postgresql_parameters", {"bad name": "1"}),
    ],
)
def test_bad_variable_is_refused_by_name_before_any_change(variable: str, value: object, tmp_path: Path) -> None:
    manifest_dir = tmp_path / "manifests"
    # JSON, so that lists and mappings arrive as such; strings arrive as `-e name=value` passes them.
    run = render(manifest_dir, "-e", json.dumps({variable: value}), home=tmp_path)

    assert run.rc != 0
    assert variable in error_message(run.output), run.output
    assert "Traceback" not in run.output
    assert not manifest_dir.exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("pg_cluster_client_cidrs", ["192.0.2.0/24", "0.0.0.0/0", "2001:db8::/32", "::/0", "fd00::10.0.0.0/104"]),
        (
            "pg_cluster_resources",
            {"requests": {"cpu": 1, "memory": "512Mi"}, "limits": {"cpu": "1.5", "memory": "1e9"}},
        ),
        ("pg_cluster_timezone", "Etc/GMT-9"),
    ],
)
def test_good_variable_in_a_checked_format_renders(
    variable: str, value: object, tmp_path: Path, tripwire: Path
) -> None:
    manifest_dir = tmp_path / "manifests"
    run = render(manifest_dir, "-e", json.dumps({variable: value}), home=tmp_path, tripwire=tripwire)

    assert run.rc == 0, run.output
    assert_rendered(manifest_dir, 3)


def test_rerun_keeps_the_secret_and_changes_nothing(rendered_twice: Rendered) -> None:
    assert rendered_twice.second.rc == 0, rendered_twice.second.output
    assert (rendered_twice.manifest_dir / "10-secret.yaml").read_bytes() == rendered_twice.secret_after_first
    recap = [line for line in rendered_twice.second.output.splitlines() if line.startswith("localhost")]
    assert recap and "changed=0" in recap[-1], recap
    assert "failed=0" in recap[-1]


def test_no_password_in_output_or_configmaps(rendered_twice: Rendered) -> None:
    secrets = passwords(rendered_twice.manifest_dir)
    assert len(secrets) == 2 and all(len(p) >= 16 for p in secrets)
    configmaps = [
        doc
        for path in rendered_twice.manifest_dir.glob("*.yaml")
        for doc in documents(path)
        if doc["kind"] == "ConfigMap"
    ]
    assert configmaps
    for secret in secrets:
        encoded = base64.b64encode(secret.encode()).decode()
        for run in (rendered_twice.first, rendered_twice.second):
            assert secret not in run.output
            assert encoded not in run.output
        for configmap in configmaps:
            assert secret not in yaml.safe_dump(configmap), configmap["metadata"]["name"]


def test_check_mode_of_render_only_writes_nothing(tmp_path: Path, tripwire: Path) -> None:
    manifest_dir = tmp_path / "manifests"
    run = render(manifest_dir, "--check", "--diff", home=tmp_path, tripwire=tripwire)

    assert run.rc == 0, run.output
    assert not manifest_dir.exists()


def engine_answers() -> bool:
    for engine in ("docker", "podman"):
        binary = shutil.which(engine)
        if binary is None:
            continue
        try:
            done = subprocess.run([binary, "info"], capture_output=True, timeout=15, check=False)
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            return True
    return False


@pytest.mark.skipif(engine_answers(), reason="a container engine answers here: site.yml would really deploy")
def test_site_without_container_engine_stops_with_one_sentence(tmp_path: Path) -> None:
    started = time.monotonic()
    run = playbook(home=tmp_path)
    elapsed = time.monotonic() - started

    assert run.rc != 0
    # The acceptance's "stops within 30 s". Not a speed target: it catches a run that waits on a
    # download or a network timeout (a hang) before it notices there is no engine.
    assert elapsed < 30, f"took {elapsed:.0f} s:\n{run.output}"
    assert ENGINE_SENTENCE in " ".join(run.output.split())
    assert "Traceback" not in run.output
    # Stopped before any download or kind config.
    assert not (tmp_path / ".local").exists()


# Values that used to be accepted and failed later (in the pod, at initdb, at the API): all refused
# together by the preflight, each in a sentence naming its variable, before anything is written.
LATE_FAILURES = {
    "pg_cluster_replication_user": "pg_repl",
    "pg_cluster_superuser": "all",
    "pg_cluster_timezone": "Mars/Olympus",
    "pg_cluster_members": "100000",
    "pg_cluster_kubernetes_version": "1.20.0",
    "pg_cluster_storage_class": "Fast_SSD",
    "pg_cluster_image": "postgres 15",
    "pg_cluster_resources": {"requests": {"cpu": "4", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    "pg_cluster_client_pod_labels": [{"app": "web,role!=x"}],
    "pg_cluster_postgresql_parameters": {"synchronous_standby_names": ""},
}


def test_values_that_would_fail_later_are_refused_together_before_any_change(tmp_path: Path, tripwire: Path) -> None:
    manifest_dir = tmp_path / "manifests"
    run = render(manifest_dir, "-e", json.dumps(LATE_FAILURES), home=tmp_path, tripwire=tripwire)

    assert run.rc != 0
    message = error_message(run.output)
    assert [name for name in LATE_FAILURES if name not in message] == [], message
    assert "Traceback" not in run.output and "list index out of range" not in run.output
    assert not manifest_dir.exists()
    assert not (tripwire / "calls.log").exists()


def test_a_dict_given_as_a_string_is_refused_with_the_way_to_give_it(tmp_path: Path) -> None:
    run = render(tmp_path / "manifests", "-e", "pg_cluster_postgresql_parameters=work_mem=64MB", home=tmp_path)

    assert run.rc != 0
    assert "pg_cluster_postgresql_parameters must be a mapping" in error_message(run.output), run.output
    assert "has no attribute" not in run.output


def test_client_cidrs_given_as_one_string_render(tmp_path: Path, tripwire: Path) -> None:
    manifest_dir = tmp_path / "manifests"
    run = render(manifest_dir, "-e", "pg_cluster_client_cidrs=192.0.2.0/24,198.51.100.0/24", home=tmp_path, tripwire=tripwire)

    assert run.rc == 0, run.output
    (policy,) = documents(manifest_dir / "60-networkpolicy.yaml")
    cidrs = [peer["ipBlock"]["cidr"] for rule in policy["spec"]["ingress"] for peer in rule["from"] if "ipBlock" in peer]
    assert cidrs == ["192.0.2.0/24", "198.51.100.0/24"]


def test_destroy_without_the_kind_cluster_says_so_and_removes_nothing(tmp_path: Path, tripwire: Path) -> None:
    run = playbook("-e", "pg_cluster_kind_name=no-such-cluster", home=tmp_path, playbook_file="playbooks/destroy.yml")

    assert run.rc != 0
    assert "There is no kind cluster named no-such-cluster" in error_message(run.output), run.output
    assert "nothing was removed" in error_message(run.output)


def test_destroy_without_a_kubeconfig_names_the_variable(tmp_path: Path) -> None:
    run = playbook("-e", "pg_cluster_target=existing", home=tmp_path, playbook_file="playbooks/destroy.yml")

    assert run.rc != 0
    message = error_message(run.output)
    assert f"pg_cluster_kubeconfig={tmp_path}/.kube/config does not exist" in message, run.output
    assert "remote_src" not in run.output


@pytest.mark.parametrize(
    ("playbook_file", "variable", "value"),
    [
        ("playbooks/status.yml", "pg_status_min_streaming", "abc"),
        ("playbooks/status.yml", "pg_status_fail_unhealthy", "maybe"),
        ("playbooks/switchover.yml", "pg_switchover_max_lag_bytes", "abc"),
        ("playbooks/failover.yml", "pg_failover_force", "perhaps"),
    ],
)
def test_playbook_variables_are_not_coerced(playbook_file: str, variable: str, value: str, tmp_path: Path) -> None:
    run = playbook("-e", f"{variable}={value}", home=tmp_path, playbook_file=playbook_file)

    assert run.rc != 0
    assert f"argument '{variable}' is of type" in error_message(run.output), run.output
