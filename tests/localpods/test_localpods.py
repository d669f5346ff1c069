"""Issue 3 acceptance: the rendered StatefulSet runs for real on the local pod runtime.

One cluster (default variables: 3 members, ANY 1 synchronous replication, WAL archive) is shared
by the tests of this module, in order; each test leaves every member ready and streaming again.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.localpods import cli
from tests.localpods.fixtures import CLI, TUNED_PARAMETERS_SHOWN, LocalPods, _down_all, eventually, still_running
from tests.localpods.freezer import CHOICE_VARIABLE, cgroup_mounts

PRIMARY = "postgres-0"
STANDBYS = ["postgres-1", "postgres-2"]


def all_streaming(cluster: LocalPods, primary: str = PRIMARY) -> bool:
    return sorted(cluster.streaming(primary)) == sorted(n for n in cluster.pod_names() if n != primary)


def settle(cluster: LocalPods) -> None:
    cluster.wait_ready(3)
    eventually(lambda: all_streaming(cluster, cluster.primary_and_standbys()[0]), message="every standby streaming from the primary")


def system_identifier(cluster: LocalPods, pod: str) -> str:
    return cluster.psql(pod, "SELECT system_identifier FROM pg_control_system()")


def test_members_up_with_synchronous_streaming(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    assert cluster.pod_names() == [PRIMARY, *STANDBYS]
    settle(cluster)
    assert cluster.primary_and_standbys() == (PRIMARY, STANDBYS)
    assert cluster.psql(PRIMARY, "SHOW synchronous_standby_names") == 'ANY 1 ("postgres-0", "postgres-1", "postgres-2")'
    # ANY 1 of the listed names: every streaming standby is a quorum candidate.
    assert cluster.streaming(PRIMARY) == {"postgres-1": "quorum", "postgres-2": "quorum"}
    # One system: the standbys are clones of the primary, initialised with data checksums.
    assert {system_identifier(cluster, pod) for pod in cluster.pod_names()} == {system_identifier(cluster, PRIMARY)}
    assert cluster.psql(PRIMARY, "SHOW data_checksums") == "on"
    # pg_cluster_wal_segment_size_mb (default 4) reached initdb; the clones inherit it.
    assert {cluster.psql(pod, "SHOW wal_segment_size") for pod in cluster.pod_names()} == {"4MB"}
    assert cluster.psql(PRIMARY, "SHOW password_encryption") == "scram-sha-256"
    assert cluster.psql(PRIMARY, "SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'") == "t"
    # The pods' identity as Kubernetes gives it: hostname and the headless Service names.
    assert cluster.exec("postgres-1", "hostname").stdout.strip() == "postgres-1"
    primary_ip = cluster.pod(PRIMARY)["status"]["podIP"]
    for name in ("postgres-0.postgres", "postgres-0.postgres.postgres.svc.cluster.local"):
        assert cluster.exec("postgres-2", "getent", "hosts", name).stdout.split()[0] == primary_ip


def test_every_member_runs_with_the_postgresql_parameters_given(localpods_cluster: LocalPods) -> None:
    shown = {pod: {name: localpods_cluster.psql(pod, f"SHOW {name}") for name in TUNED_PARAMETERS_SHOWN} for pod in [PRIMARY, *STANDBYS]}
    assert shown == {pod: TUNED_PARAMETERS_SHOWN for pod in [PRIMARY, *STANDBYS]}


def test_row_written_on_primary_is_read_on_both_standbys(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    cluster.psql(PRIMARY, "CREATE TABLE acceptance (id int PRIMARY KEY, note text); INSERT INTO acceptance VALUES (1, 'written on the primary')")
    for standby in STANDBYS:
        eventually(
            lambda pod=standby: cluster.psql(pod, "SELECT note FROM acceptance WHERE id = 1") == "written on the primary", message=f"the row on {standby}"
        )


def test_wal_segments_reach_the_archive(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    segment = cluster.psql(PRIMARY, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    cluster.psql(PRIMARY, "INSERT INTO acceptance VALUES (2, 'before the switch'); SELECT pg_switch_wal()")
    archive = os.path.join(cluster.volume_dir("postgres-wal-archive"), "postgres", "postgres")
    eventually(lambda: os.path.isfile(os.path.join(archive, segment)), message=f"{segment} in the archive")
    assert os.path.getsize(os.path.join(archive, segment)) == 4 * 1024 * 1024
    assert cluster.psql(PRIMARY, "SELECT failed_count FROM pg_stat_archiver") == "0"


def test_archive_script_keeps_identical_and_refuses_different_files(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    script = "/etc/postgresql/scripts/archive-wal.sh"
    name = "localpods-test-file"
    cluster.exec(PRIMARY, "sh", "-c", "echo one > /tmp/one; echo two > /tmp/two")
    try:
        assert cluster.exec(PRIMARY, script, "/tmp/one", name, check=False).returncode == 0
        again = cluster.exec(PRIMARY, script, "/tmp/one", name, check=False)
        assert again.returncode == 0 and "already archived" in again.stderr
        different = cluster.exec(PRIMARY, script, "/tmp/two", name, check=False)
        assert different.returncode != 0 and different.stderr.startswith("archive-wal.sh: ")
        assert cluster.exec(PRIMARY, "cat", f"/var/lib/postgresql/wal-archive/postgres/postgres/{name}").stdout == "one\n"
    finally:
        cluster.exec(PRIMARY, "rm", "-f", f"/var/lib/postgresql/wal-archive/postgres/postgres/{name}")


def test_killed_standby_postgres_restarts_and_streams(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    before = cluster.restart_count("postgres-1")
    killed = cluster.cli("kill", "postgres-1", "--signal", "KILL").stdout.split()
    assert killed
    eventually(lambda: cluster.restart_count("postgres-1") == before + 1, message="the container restarted")
    settle(cluster)
    assert "postgres exited unexpectedly" in cluster.log("postgres-1")
    assert cluster.psql("postgres-1", "SELECT count(*) FROM acceptance") == "2"


def test_deleted_standby_pod_reruns_init_and_keeps_its_data(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    identifier = system_identifier(cluster, "postgres-2")
    inits = cluster.log("postgres-2", "init-postgres").count("localpods: starting init-postgres")
    cluster.cli("delete-pod", "postgres-2")
    settle(cluster)
    init_log = cluster.log("postgres-2", "init-postgres")
    assert init_log.count("localpods: starting init-postgres") == inits + 1
    assert "data present" in init_log.rsplit("localpods: starting init-postgres", 1)[1]
    assert system_identifier(cluster, "postgres-2") == identifier
    cluster.psql(PRIMARY, "INSERT INTO acceptance VALUES (3, 'after the pod came back')")
    eventually(lambda: cluster.psql("postgres-2", "SELECT count(*) FROM acceptance") == "3", message="postgres-2 replays again")


def test_standby_with_deleted_volume_is_recloned(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    cluster.cli("delete-volume", "postgres-2", "pgdata")
    settle(cluster)
    last_init = cluster.log("postgres-2", "init-postgres").rsplit("localpods: starting init-postgres", 1)[1]
    assert "cloning postgres-0.postgres" in last_init
    assert system_identifier(cluster, "postgres-2") == system_identifier(cluster, PRIMARY)
    assert cluster.psql("postgres-2", "SELECT count(*) FROM acceptance") == "3"


def test_recreated_primary_pod_comes_back_as_primary_with_its_data(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    identifier = system_identifier(cluster, PRIMARY)
    cluster.psql(PRIMARY, "INSERT INTO acceptance VALUES (4, 'before the primary pod went')")
    cluster.cli("delete-pod", PRIMARY)
    settle(cluster)
    assert cluster.primary_and_standbys() == (PRIMARY, STANDBYS)
    assert system_identifier(cluster, PRIMARY) == identifier
    assert cluster.psql(PRIMARY, "SELECT count(*) FROM acceptance") == "4"
    cluster.psql(PRIMARY, "INSERT INTO acceptance VALUES (5, 'after')")
    for standby in STANDBYS:
        eventually(lambda pod=standby: cluster.psql(pod, "SELECT count(*) FROM acceptance") == "5", message=f"{standby} follows the recreated primary")


def test_held_member_waits_and_resumes_without_a_restart(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    restarts = cluster.restart_count("postgres-1")
    cluster.exec("postgres-1", "sh", "-c", 'touch /var/run/postgresql/hold && pg_ctl -D "$PGDATA" -m fast -w stop')
    eventually(lambda: not cli_ready(cluster, "postgres-1"), message="a held member is not ready")
    assert cluster.exec("postgres-1", "/etc/postgresql/scripts/probe.sh", "live", check=False).returncode == 0
    assert cluster.exec("postgres-1", "cat", "/var/run/postgresql/supervisor.phase").stdout.strip() == "held"
    cluster.exec("postgres-1", "rm", "/var/run/postgresql/hold")
    settle(cluster)
    assert cluster.restart_count("postgres-1") == restarts


def cli_ready(cluster: LocalPods, pod: str) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in cluster.pod(pod)["status"]["conditions"])


def test_exec_reports_the_command_status_and_missing_pods(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    assert cluster.exec("postgres-1", "sh", "-c", "exit 7", check=False).returncode == 7
    assert cluster.exec("postgres-1", "id", "-un").stdout.strip() == "postgres"
    missing = cluster.exec("postgres-9", "true", check=False)
    assert missing.returncode == 255 and missing.stderr.startswith("localpods:")
    cluster.cli("stop", "postgres-2")
    try:
        stopped = cluster.exec("postgres-2", "true", check=False)
        assert stopped.returncode == 255 and stopped.stderr.startswith("localpods:")
    finally:
        cluster.cli("start", "postgres-2")
    settle(cluster)


def test_former_primary_is_rewound_to_follow_the_recorded_primary(localpods_cluster: LocalPods) -> None:
    """What a failover leaves behind: the old primary and a standby hold WAL the new primary never
    had. Started against the new record, both are rewound (not re-initialised) and follow it."""
    cluster = localpods_cluster
    identifier = system_identifier(cluster, PRIMARY)
    # Split history: postgres-1 is promoted while postgres-0 still runs and writes, and postgres-2
    # still replicates from postgres-0.
    cluster.psql("postgres-1", "SELECT pg_promote()")
    cluster.exec("postgres-1", "sh", "-c", 'echo 2 > "$PGDATA/dbonk8s.epoch"')
    cluster.psql(PRIMARY, "INSERT INTO acceptance VALUES (100, 'only on the old timeline')")
    eventually(lambda: cluster.psql("postgres-2", "SELECT count(*) FROM acceptance WHERE id = 100") == "1", message="postgres-2 on the old history")
    cluster.cli("stop", PRIMARY)
    store = cluster.store()
    record = store.get("ConfigMap", cluster.namespace, "postgres-primary")
    record["data"] = {"primary": "postgres-1", "epoch": "2"}
    store.replace(record)
    cluster.cli("start", PRIMARY)
    cluster.cli("delete-pod", "postgres-2")
    settle(cluster)
    assert cluster.primary_and_standbys() == ("postgres-1", ["postgres-0", "postgres-2"])
    assert "pg_rewind decides" in cluster.log(PRIMARY)
    # Synchronous again (ANY 1): the commit returns because a rewound standby confirmed it.
    cluster.psql("postgres-1", "INSERT INTO acceptance VALUES (6, 'on the new timeline')")
    for pod in ("postgres-0", "postgres-2"):
        assert system_identifier(cluster, pod) == identifier
        eventually(
            lambda pod=pod: cluster.psql(pod, "SELECT string_agg(id::text, ',' ORDER BY id) FROM acceptance") == "1,2,3,4,5,6",
            message=f"{pod} on the new history",
        )
        assert cluster.exec(pod, "sh", "-c", 'cat "$PGDATA/dbonk8s.epoch"').stdout.strip() == "2"
    assert cluster.streaming("postgres-1") == {"postgres-0": "quorum", "postgres-2": "quorum"}


def test_scale_down_keeps_the_volume_and_scale_up_rejoins(localpods_cluster: LocalPods) -> None:
    cluster = localpods_cluster
    primary, _standbys = cluster.primary_and_standbys()
    highest = "postgres-2"
    identifier = system_identifier(cluster, highest)
    cluster.cli("scale", "2")
    eventually(lambda: cluster.pod_names() == ["postgres-0", "postgres-1"], message="scaled down to 2")
    assert os.path.isdir(cluster.volume_dir(f"pgdata-{highest}"))
    eventually(lambda: highest not in cluster.streaming(primary), message=f"{highest} gone from pg_stat_replication")
    cluster.cli("scale", "3")
    settle(cluster)
    assert system_identifier(cluster, highest) == identifier
    assert "data present" in cluster.log(highest, "init-postgres").rsplit("localpods: starting init-postgres", 1)[1]


def test_second_runtime_side_by_side_and_no_process_left(localpods_cluster: LocalPods, localpods_manifests: str) -> None:
    cluster = localpods_cluster
    other = LocalPods.start(localpods_manifests, replicas=1)
    try:
        assert other.pod(PRIMARY)["status"]["podIP"] != cluster.pod(PRIMARY)["status"]["podIP"]
        assert other.psql(PRIMARY, "SELECT to_regclass('acceptance') IS NULL") == "t"
        assert cluster.psql(PRIMARY, "SELECT count(*) FROM acceptance WHERE id < 100") == "6"
    finally:
        processes = other.processes()
        commands = {process_command(pid) for pid, _started in processes}
        other.down()
    assert len(processes) >= 3, "pause, supervisor and postgres processes are expected"
    assert {"sleep", "postgres"} <= commands, f"the pause process and postgres are among {commands}"
    assert still_running(processes) == []
    assert not os.path.exists(other.state_dir)
    # The shared cluster is still whole.
    settle(cluster)


def test_cli_status_lists_the_pods(localpods_cluster: LocalPods) -> None:
    status = subprocess.run([sys.executable, CLI, "--state-dir", localpods_cluster.state_dir, "status"], capture_output=True, text=True, check=True).stdout
    lines = status.splitlines()
    assert lines[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert [line.split()[:2] for line in lines[1:]] == [[pod, "1/1"] for pod in [PRIMARY, *STANDBYS]]


def test_frozen_member_answers_no_query_until_thawed(localpods_cluster: LocalPods) -> None:
    """A frozen member's kernel still completes TCP handshakes on its address, but PostgreSQL never
    answers: neither a query from another pod nor pg_isready from the host, within their timeouts.
    The pod keeps its last status meanwhile, and answers again once thawed."""
    cluster = localpods_cluster
    primary, standbys = cluster.primary_and_standbys()
    frozen = standbys[-1]
    address = cluster.pod(frozen)["status"]["podIP"]
    conninfo = f"host={frozen}.postgres dbname=postgres connect_timeout=2"
    query = ["env", "PGPASSFILE=/var/run/postgresql/.pgpass", "psql", "-X", "-A", "-t", "-d", conninfo, "-c", "SELECT pg_is_in_recovery()"]

    def pg_isready_from_host() -> subprocess.CompletedProcess:
        return subprocess.run(["/usr/lib/postgresql/15/bin/pg_isready", "-h", address, "-p", "5432", "-t", "2"], capture_output=True, text=True, check=False)

    assert cluster.exec(primary, *query).stdout.strip() == "t"
    cluster.psql(primary, "CREATE TABLE frozen_member (note text)")
    cluster.cli("freeze", frozen)
    try:
        from_pod = cluster.exec(primary, *query, check=False)
        assert from_pod.returncode != 0 and "timeout expired" in from_pod.stderr, from_pod
        from_host = pg_isready_from_host()
        assert from_host.returncode == 2, f"pg_isready: exit {from_host.returncode} {from_host.stdout}"  # 2: no response
        assert cli.is_ready(cluster.pod(frozen))
        # ANY 1: the other standby confirms the commit.
        cluster.psql(primary, "INSERT INTO frozen_member VALUES ('while a standby was frozen')")
    finally:
        cluster.cli("thaw", frozen)
    assert cluster.exec(primary, *query).stdout.strip() == "t"
    assert pg_isready_from_host().returncode == 0
    eventually(lambda: cluster.psql(frozen, "SELECT count(*) FROM frozen_member") == "1", message=f"{frozen} replays again")
    settle(cluster)


def test_recorded_primary_with_a_lost_volume_is_never_recreated_empty(localpods_cluster: LocalPods) -> None:
    """Runs last on the shared cluster: it leaves it without a primary, as losing one does."""
    cluster = localpods_cluster
    primary, standbys = cluster.primary_and_standbys()
    identifiers = {pod: system_identifier(cluster, pod) for pod in standbys}
    cluster.cli("delete-volume", primary, "pgdata")
    eventually(lambda: "never re-created empty" in cluster.log(primary, "init-postgres"), message="init.sh refusing")
    assert not os.path.exists(os.path.join(cluster.volume_dir(f"pgdata-{primary}"), "pgdata"))
    assert cluster.exec(primary, "true", check=False).returncode == 255
    for pod, identifier in identifiers.items():
        assert system_identifier(cluster, pod) == identifier
        assert cluster.psql(pod, "SELECT count(*) FROM acceptance WHERE id < 100") == "6"
    # A standby restarted while its primary is away still starts, ready to be failed over to.
    restarted = standbys[0]
    cluster.cli("delete-pod", restarted)
    eventually(lambda: cli_ready(cluster, restarted), message=f"{restarted} ready without its primary")
    assert "does not answer; starting as its standby anyway" in cluster.log(restarted)
    assert cluster.psql(restarted, "SELECT pg_is_in_recovery()") == "t"
    assert system_identifier(cluster, restarted) == identifiers[restarted]


@pytest.mark.parametrize("command", [["status"], ["delete-pod", "postgres-0"]])
def test_cli_without_runtime_fails_cleanly(tmp_path, command: list[str]) -> None:
    result = subprocess.run([sys.executable, CLI, "--state-dir", str(tmp_path), *command], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stderr.startswith("localpods:")


# -- pods without PostgreSQL: the rendered StatefulSet with its commands replaced ----------------

DATA = "/var/lib/postgresql/data"  # the pgdata volume in the pod; volume_dir(f"pgdata-{pod}") outside


def toy_manifests(source: str, target: str, init: list[str], main: list[str], probe: list[str] | None = None) -> str:
    """A copy of the rendered manifests whose pods run ``init`` and ``main`` instead of the pod
    scripts, ready by the exec probe ``probe`` (at once without one), with no startup or liveness
    probe (the rendered ones ask PostgreSQL): cheap, controllable pods."""
    os.makedirs(target)
    for name in sorted(os.listdir(source)):
        with open(os.path.join(source, name), encoding="utf-8") as handle:
            documents = list(yaml.safe_load_all(handle))
        for document in documents:
            if (document or {}).get("kind") == "StatefulSet":
                spec = document["spec"]["template"]["spec"]
                spec["initContainers"][0]["command"] = init
                container = spec["containers"][0]
                container["command"] = main
                for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                    container.pop(kind)
                if probe:
                    container["readinessProbe"] = {"exec": {"command": probe}, "periodSeconds": 1, "timeoutSeconds": 5, "failureThreshold": 1}
        with open(os.path.join(target, name), "w", encoding="utf-8") as handle:
            yaml.safe_dump_all(documents, handle)
    return target


def process_command(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def process_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []


def test_leftover_check_sees_a_pod_still_in_its_init_container(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    """While the init container runs, exec.json knows only it (exec reaches a running init container,
    as in Kubernetes, and not the main one): the pause process and the init container are found as
    descendants of the daemon."""
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["sleep", "infinity"], main=["sleep", "infinity"])
    runtime = localpods_factory(manifests, replicas=1, wait=False)
    postgres_uid = pwd.getpwnam("postgres").pw_uid

    def pod_processes() -> dict[int, int | None]:
        found = {pid: process_uid(pid) for pid, _started in runtime.processes() if pid != runtime.daemon_pid and process_command(pid) == "sleep"}
        # The pause process runs as root, the init container as the postgres user.
        return found if sorted(found.values()) == [0, postgres_uid] else {}

    found = eventually(pod_processes, timeout=60, message="the pause process and the init container")
    status = runtime.pod("postgres-0")["status"]
    assert "running" in status["initContainerStatuses"][0]["state"]
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    with open(os.path.join(runtime.state_dir, "pods", "postgres-0", "exec.json"), encoding="utf-8") as handle:
        assert list(json.load(handle)["containers"]) == ["init-postgres"]
    assert "container postgres of pod postgres-0 is not running" in runtime.exec("postgres-0", "true", check=False).stderr
    processes = runtime.processes()
    assert set(found) <= {pid for pid, _started in processes}
    runtime.down()
    assert still_running(processes) == []


def test_leftovers_are_reported_and_down_after_a_dead_daemon_kills_them(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    """The daemon killed: its pods run on. The leftover check reports them, and ``down`` (which
    cannot ask the daemon) kills them before deleting the state directory."""
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["true"], main=["sh", "-c", "sleep infinity & wait"])
    runtime = localpods_factory(manifests, replicas=1)
    state_dir, daemon_pid = runtime.state_dir, runtime.daemon_pid

    def pause_container_and_its_child() -> set | None:
        found = {(pid, started) for pid, started in runtime.processes() if pid != daemon_pid}
        # A container without a readiness probe is ready as it starts, maybe before its shell forked.
        return found if sorted(process_command(pid) for pid, _started in found) == ["sh", "sleep", "sleep"] else None

    pods = eventually(pause_container_and_its_child, timeout=30, message="pause, container, its child")
    processes = runtime.processes()

    def daemon_dies() -> None:
        os.kill(daemon_pid, signal.SIGKILL)
        eventually(lambda: not cli._daemon_alive(runtime.info), message="the daemon gone")  # pylint: disable=protected-access
        runtime.up = False

    runtime.down = daemon_dies
    try:
        with pytest.raises(AssertionError, match="processes left behind by the local pod runtime"):
            _down_all([(runtime, set())])
        assert sorted(still_running(pods)) == sorted(pid for pid, _started in pods)
        cli.down(state_dir)
        assert still_running(processes) == []
        assert not os.path.exists(state_dir)
    finally:
        if os.path.exists(state_dir):
            cli.down(state_dir)


def test_ordered_start_waits_for_the_previous_member_to_be_ready(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    """podManagementPolicy OrderedReady: member N+1 is created, so its container started, only once
    member N is ready. Each member becomes ready when the test creates its ``ready`` file."""
    manifests = toy_manifests(
        localpods_manifests,
        str(tmp_path / "manifests"),
        init=["true"],
        main=["sh", "-c", f"date +%s.%N > {DATA}/started; exec sleep infinity"],
        probe=["sh", "-c", f"if [ -e {DATA}/ready ]; then date +%s.%N >> {DATA}/ready-probes; else echo no >> {DATA}/probes; exit 1; fi"],
    )
    runtime = localpods_factory(manifests, replicas=3, wait=False)
    pods = ["postgres-0", "postgres-1", "postgres-2"]
    for ordinal, pod in enumerate(pods):
        data = runtime.volume_dir(f"pgdata-{pod}")
        eventually(lambda data=data: len(lines(os.path.join(data, "probes"))) >= 3, timeout=60, message=f"{pod} probed, not ready")
        # Three failed probes of member N: member N+1 does not exist.
        assert runtime.pod_names() == pods[: ordinal + 1]
        assert not cli.is_ready(runtime.pod(pod))
        with open(os.path.join(data, "ready"), "w", encoding="utf-8"):
            pass
        eventually(lambda pod=pod: cli.is_ready(runtime.pod(pod)), timeout=60, message=f"{pod} ready")
    runtime.wait_ready(3)
    for earlier, later in zip(pods, pods[1:]):
        # Member N is ready from its first successful probe on; member N+1's container started after it.
        became_ready = float(lines(os.path.join(runtime.volume_dir(f"pgdata-{earlier}"), "ready-probes"))[0])
        started = float(lines(os.path.join(runtime.volume_dir(f"pgdata-{later}"), "started"))[0])
        assert became_ready < started, f"{later} started at {started}, before {earlier} was ready at {became_ready}"


def test_restart_back_off_grows_for_a_crash_looping_container(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    """With --backoff-initial=1 the delays before restarts are 1, 2, 4 s: each gap between two
    starts is longer than the one before (only their order is checked, no duration)."""
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["true"], main=["sh", "-c", "date +%s.%N; exit 3"])
    runtime = localpods_factory(manifests, replicas=1, wait=False, options=["--backoff-initial=1", "--backoff-max=8"])

    def starts() -> list[float]:
        found = []
        with contextlib.suppress(FileNotFoundError):
            found = [float(line) for line in runtime.log("postgres-0").splitlines() if not line.startswith("---")]
        return found if len(found) >= 4 else []

    started = eventually(starts, timeout=60, message="four starts of the container")
    gaps = [later - earlier for earlier, later in zip(started, started[1:4])]
    assert gaps[0] < gaps[1] < gaps[2], f"gaps between starts: {gaps}"
    status = runtime.pod("postgres-0")["status"]
    container = status["containerStatuses"][0]
    assert container["restartCount"] >= 3
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert not cli.is_ready(runtime.pod("postgres-0"))


# -- freeze and thaw --------------------------------------------------------------------------------


def tick(name: str) -> str:
    """A shell loop that appends a line to the file ``name`` of the pgdata volume every 50 ms, each
    time through two new processes (date, sleep): it shows progress, its forks' included."""
    return f"while :; do date +%s.%N >> {DATA}/{name}; sleep 0.05; done"


def progresses(path: str, message: str) -> None:
    """Waits until the file has more lines than now."""
    before = len(lines(path))
    eventually(lambda: len(lines(path)) > before, timeout=30, interval=0.05, message=message)


def assert_no_progress(paths: list[str], seconds: float = 1.5) -> None:
    """A bounded wait that shows that nothing progresses: no file of ``paths`` gets a line."""
    before = {path: len(lines(path)) for path in paths}
    time.sleep(seconds)
    assert {path: len(lines(path)) for path in paths} == before


def live_pod_processes(runtime: LocalPods) -> set[int]:
    """The live processes of the runtime's pods (zombies not counted)."""
    return set(still_running(runtime.processes())) - {runtime.daemon_pid}


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_frozen_pod_makes_no_progress_until_thawed(localpods_factory, localpods_manifests: str, tmp_path, monkeypatch, kind: str) -> None:
    """Every process of a frozen pod stops: the init container, then the main container and what it
    forks, and a command exec'd into the pod after the freeze, whose caller's own timeout still
    applies. Everything goes on after the thaw; the exec whose caller gave up never runs."""
    if kind not in {mount_kind for mount_kind, _mount_point in cgroup_mounts()}:
        pytest.skip(f"no cgroup {kind} hierarchy with a freezer on this machine")
    monkeypatch.setenv(CHOICE_VARIABLE, kind)
    manifests = toy_manifests(
        localpods_manifests,
        str(tmp_path / "manifests"),
        init=["sh", "-c", f"until [ -e {DATA}/init-done ]; do date +%s.%N >> {DATA}/init-ticks; sleep 0.05; done"],
        main=["sh", "-c", f"({tick('child-ticks')}) & {tick('main-ticks')}"],
    )
    runtime = localpods_factory(manifests, replicas=1, wait=False)
    assert runtime.info["freezer"]["kind"] == kind
    data = runtime.volume_dir("pgdata-postgres-0")
    init_ticks, main_ticks, child_ticks, exec_ticks = (os.path.join(data, name) for name in ("init-ticks", "main-ticks", "child-ticks", "exec-ticks"))

    progresses(init_ticks, "the init container ticking")
    frozen = {int(pid) for pid in runtime.cli("freeze", "postgres-0").stdout.split()}
    assert frozen == live_pod_processes(runtime), "the pause process and the init container, all in the pod's cgroup"
    assert_no_progress([init_ticks])
    runtime.cli("thaw", "postgres-0")
    progresses(init_ticks, "the init container ticking again")
    with open(os.path.join(data, "init-done"), "w", encoding="utf-8"):
        pass
    runtime.wait_ready(1)
    progresses(main_ticks, "the main container ticking")
    progresses(child_ticks, "the main container's child ticking")

    frozen = {int(pid) for pid in runtime.cli("freeze", "postgres-0").stdout.split()}
    assert frozen == live_pod_processes(runtime)
    exec_argv = [*runtime.info["exec_argv"], "postgres-0", "--"]
    late = subprocess.Popen(  # pylint: disable=consider-using-with
        [*exec_argv, "sh", "-c", f"date +%s.%N >> {DATA}/exec-ticks; echo late exec ran"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # A caller that gives up at its own timeout, as the modules do: kill, then read to the end.
    given_up = subprocess.Popen(  # pylint: disable=consider-using-with
        [*exec_argv, "touch", f"{DATA}/given-up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    with pytest.raises(subprocess.TimeoutExpired):
        given_up.communicate(timeout=1)
    given_up.kill()
    # The pipes close at once, frozen command or not (a TimeoutExpired here: they did not).
    given_up.communicate(timeout=5)
    assert given_up.returncode == -signal.SIGKILL
    assert_no_progress([main_ticks, child_ticks, exec_ticks])
    assert late.poll() is None
    assert cli.is_ready(runtime.pod("postgres-0")), "a frozen pod keeps its last status"

    runtime.cli("thaw", "postgres-0")
    out, err = late.communicate(timeout=30)
    assert (late.returncode, out) == (0, "late exec ran\n"), err
    assert len(lines(exec_ticks)) == 1
    progresses(main_ticks, "the main container ticking after the thaw")
    progresses(child_ticks, "the child ticking after the thaw")
    # Killed by its parent-death signal when its caller gave up, it died on the thaw.
    assert not os.path.exists(os.path.join(data, "given-up"))


def test_freeze_and_thaw_are_idempotent_and_refuse_unknown_pods(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["true"], main=["sh", "-c", tick("ticks")])
    runtime = localpods_factory(manifests, replicas=1)
    ticks = os.path.join(runtime.volume_dir("pgdata-postgres-0"), "ticks")
    progresses(ticks, "the container ticking")
    first = runtime.cli("freeze", "postgres-0").stdout
    assert runtime.cli("freeze", "postgres-0").stdout == first
    assert_no_progress([ticks])
    runtime.cli("thaw", "postgres-0")
    runtime.cli("thaw", "postgres-0")
    progresses(ticks, "the container ticking after the thaw")
    for verb in ("freeze", "thaw"):
        missing = runtime.cli(verb, "postgres-7", check=False)
        assert (missing.returncode, missing.stderr) == (1, "localpods: pod postgres-7 does not exist\n")
        foreign = runtime.cli(verb, "mysql-0", check=False)
        assert (foreign.returncode, foreign.stderr) == (1, "localpods: mysql-0 is not a pod of StatefulSet postgres\n")
    progresses(ticks, "the container still ticking")


def test_frozen_pod_is_deleted_and_down_after_freeze_leaves_nothing_behind(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    """delete-pod thaws a frozen pod, then deletes it (SIGTERM, as a frozen node that comes back
    would); the pod made again is not frozen. ``down`` with frozen pods leaves no process and no cgroup."""
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["true"], main=["sh", "-c", tick("ticks")])
    runtime = localpods_factory(manifests, replicas=2)
    ticks = os.path.join(runtime.volume_dir("pgdata-postgres-0"), "ticks")
    progresses(ticks, "the container ticking")
    frozen = {int(pid) for pid in runtime.cli("freeze", "postgres-0").stdout.split()}
    old = {(pid, started) for pid, started in runtime.processes() if pid in frozen}
    assert len(old) == len(frozen)
    runtime.cli("delete-pod", "postgres-0")
    # delete-pod returns once the pod is gone.
    assert still_running(old) == []
    runtime.wait_ready(2)
    assert runtime.log("postgres-0").count("localpods: starting postgres") == 2
    progresses(ticks, "the new pod ticking")

    for pod in ("postgres-0", "postgres-1"):
        runtime.cli("freeze", pod)
    processes = runtime.processes()
    cgroups = runtime.cgroups()
    root = runtime.freezer().root
    expected = [root] + [os.path.join(root, pod, *container) for pod in ("postgres-0", "postgres-1") for container in ((), ("init-postgres",), ("postgres",))]
    assert sorted(cgroups) == sorted(expected), "the runtime's cgroup, one per pod and one per container of each"
    runtime.down()
    assert still_running(processes) == []
    assert [cgroup for cgroup in cgroups if os.path.exists(cgroup)] == []
    assert not os.path.exists(runtime.state_dir)


def test_down_after_a_dead_daemon_kills_frozen_pods_and_removes_their_cgroups(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["true"], main=["sh", "-c", tick("ticks")])
    runtime = localpods_factory(manifests, replicas=1)
    runtime.cli("freeze", "postgres-0")
    processes = runtime.processes()
    pods = {(pid, started) for pid, started in processes if pid != runtime.daemon_pid}
    cgroups = runtime.cgroups()
    os.kill(runtime.daemon_pid, signal.SIGKILL)
    eventually(lambda: not cli._daemon_alive(runtime.info), message="the daemon gone")  # pylint: disable=protected-access
    runtime.up = False
    try:
        assert sorted(still_running(pods)) == sorted(pid for pid, _started in pods), "the frozen pod outlives its daemon"
        cli.down(runtime.state_dir)
        assert still_running(processes) == []
        assert [cgroup for cgroup in cgroups if os.path.exists(cgroup)] == []
        assert not os.path.exists(runtime.state_dir)
    finally:
        if os.path.exists(runtime.state_dir):
            cli.down(runtime.state_dir)


def test_freeze_fails_clearly_without_a_cgroup_freezer(localpods_factory, localpods_manifests: str, tmp_path, monkeypatch) -> None:
    """With no usable freezer (here: chosen away) pods run as usual, freeze fails with a one-line
    reason instead of stopping some processes only, and thaw has nothing to do."""
    monkeypatch.setenv(CHOICE_VARIABLE, "none")
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["true"], main=["sleep", "infinity"])
    runtime = localpods_factory(manifests, replicas=1)
    assert runtime.info["freezer"] is None and runtime.cgroups() == []
    refused = runtime.cli("freeze", "postgres-0", check=False)
    assert refused.returncode == 1
    assert refused.stderr == f"localpods: cannot freeze pod postgres-0: this machine offers no usable cgroup freezer ({CHOICE_VARIABLE}=none)\n"
    assert runtime.cli("thaw", "postgres-0").stdout == ""
    assert runtime.exec("postgres-0", "sh", "-c", "exit 3", check=False).returncode == 3


def test_cli_takes_the_state_dir_after_the_verb_refuses_bad_scales_and_shows_a_stopped_runtime(localpods_factory, localpods_manifests: str, tmp_path) -> None:
    manifests = toy_manifests(localpods_manifests, str(tmp_path / "manifests"), init=["true"], main=["sh", "-c", "sleep infinity & wait"])
    runtime = localpods_factory(manifests, replicas=1)

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, CLI, *argv], capture_output=True, text=True, check=False)

    after = run("status", "--state-dir", runtime.state_dir)
    assert after.returncode == 0, after.stderr
    assert [line.split()[:3] for line in after.stdout.splitlines()[1:]] == [["postgres-0", "1/1", "Running"]]
    for replicas in ("-1", str(cli.max_members() + 1)):
        refused = run("--state-dir", runtime.state_dir, "scale", "--", replicas)
        assert refused.returncode == 1 and f"from 0 to {cli.max_members()}" in refused.stderr, refused.stderr
    assert run("--state-dir", runtime.state_dir, "status").stdout == after.stdout, "a refused scale changes nothing"
    accepted = run("scale", "1", "--state-dir", runtime.state_dir)
    assert accepted.returncode == 0, accepted.stderr

    cli.down(runtime.state_dir, keep=True)
    runtime.up = False
    stopped = run("--state-dir", runtime.state_dir, "status")
    assert stopped.returncode == 0, stopped.stderr
    assert [line.split()[:3] for line in stopped.stdout.splitlines()[1:]] == [["postgres-0", "0/1", "RuntimeStopped"]]
    cli.down(runtime.state_dir)
