#!/usr/bin/env python
"""Command line of the local pod runtime.

cli.py up MANIFEST_DIR [--state-dir DIR] [--replicas N]   start the daemon, wait until healthy
cli.py up [--empty] [--state-dir DIR]                     start a daemon with an empty store
cli.py --state-dir DIR status|wait|exec|logs|stop|start|kill|freeze|thaw|hold-config|delete-pod|delete-volume|create-job|scale|down

``up MANIFEST_DIR`` imports the render directory into the store and waits until the pods of its
(first) StatefulSet are ready; ``runtime.json`` names that StatefulSet and its namespace. ``up`` without
a directory (or with ``--empty``) starts the runtime with nothing in its store: its controllers wait
for objects, and every StatefulSet created in the store later (any namespace, by the modules, a test or
an API server) gets its pods. The verbs that name a pod or a StatefulSet act on runtime.json's
namespace and StatefulSet unless given ``--namespace`` (and ``--statefulset``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

EXEC_FAILED = 255


class LocalPodsError(Exception):
    pass


def _runtime_info(state_dir: str) -> dict:
    try:
        with open(os.path.join(state_dir, "runtime.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise LocalPodsError(f"no local pod runtime in {state_dir}") from None


def request(state_dir: str, op: str, timeout: float = 300, **args) -> dict:
    response = exchange(state_dir, op, timeout, **args)
    if not response.get("ok"):
        raise LocalPodsError(response.get("error", "failed"))
    return response


def exchange(state_dir: str, op: str, timeout: float = 300, **args) -> dict:
    """One request to the daemon and its answer, ``ok`` false included (with ``error``, and ``status``
    for a pod or container that cannot serve it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.path.join(state_dir, "control.sock"))
        sock.sendall((json.dumps({"op": op, **args}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise LocalPodsError(f"the runtime daemon of {state_dir} does not answer: {error}") from None
    finally:
        sock.close()
    return json.loads(data or b'{"ok": false, "error": "no answer"}')


def _store(state_dir: str):
    # Imported here: exec, the hot path of the modules and the probes, needs no store.
    from tests.localpods._api import LocalApiStore  # pylint: disable=import-outside-toplevel

    return LocalApiStore(os.path.join(state_dir, "api"))


def pods(state_dir: str, namespace: str | None = None, statefulset: str | None = None) -> list[dict]:
    """The Pod objects of a StatefulSet (runtime.json's, unless given), by ordinal; every Pod object of
    the namespace when there is no StatefulSet to go by (an empty runtime)."""
    info = _runtime_info(state_dir)
    namespace = namespace or info["namespace"]
    if statefulset is None and namespace == info["namespace"]:
        statefulset = info.get("statefulset")
    found = _store(state_dir).list("Pod", namespace)
    if not statefulset:
        return sorted(found, key=lambda p: _name_and_ordinal(p["metadata"]["name"]))
    prefix = statefulset + "-"
    return sorted((p for p in found if _ordinal(p["metadata"]["name"], prefix) is not None), key=lambda p: _ordinal(p["metadata"]["name"], prefix))


def _ordinal(pod_name: str, prefix: str) -> int | None:
    suffix = pod_name[len(prefix) :]
    return int(suffix) if pod_name.startswith(prefix) and suffix.isdigit() else None


def _name_and_ordinal(pod_name: str) -> tuple[str, int]:
    base, _dash, suffix = pod_name.rpartition("-")
    return (base, int(suffix)) if base and suffix.isdigit() else (pod_name, -1)


def pod_dirs(state_dir: str) -> list[str]:
    """The directory of every pod of the runtime, in every namespace (see runtime.py)."""
    roots = [os.path.join(state_dir, "pods")]
    namespaces = os.path.join(state_dir, "namespaces")
    if os.path.isdir(namespaces):
        roots += [os.path.join(namespaces, namespace, "pods") for namespace in sorted(os.listdir(namespaces))]
    return [os.path.join(root, pod) for root in roots if os.path.isdir(root) for pod in sorted(os.listdir(root))]


def pod_dir(state_dir: str, pod: str, namespace: str | None = None) -> str:
    """Where the runtime keeps pod ``pod`` of ``namespace`` (runtime.json's namespace by default)."""
    if namespace is None or namespace == _runtime_info(state_dir)["namespace"]:
        return os.path.join(state_dir, "pods", pod)
    return os.path.join(state_dir, "namespaces", namespace, "pods", pod)


def max_members() -> int:
    """The role's largest member count (roles/pg_cluster/vars/main.yml), which this runtime scales to at most."""
    import yaml  # pylint: disable=import-outside-toplevel

    role_vars = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles", "pg_cluster", "vars", "main.yml")
    with open(role_vars, encoding="utf-8") as handle:
        return int(yaml.safe_load(handle)["__pg_cluster_max_members"])


def observed_pods(state_dir: str, namespace: str | None = None, statefulset: str | None = None) -> list[dict]:
    """The pods as a client would see them now: with the daemon gone (down --keep, a crash) no
    container runs, so none is ready and the phase is Unknown, as for pods of a lost node."""
    current = pods(state_dir, namespace, statefulset)
    if _daemon_alive(_runtime_info(state_dir)):
        return current
    for pod in current:
        status = pod.setdefault("status", {})
        status["phase"] = "Unknown"
        status["conditions"] = [dict(c, status="False") if c.get("type") == "Ready" else c for c in status.get("conditions") or []]
        for container in status.get("containerStatuses") or []:
            container["ready"] = False
            container["state"] = {"waiting": {"reason": "RuntimeStopped"}}
    return current


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def wait_ready(state_dir: str, count: int | None = None, timeout: float = 120, namespace: str | None = None, statefulset: str | None = None) -> None:
    """Waits until the StatefulSet (runtime.json's unless given) has ``count`` pods (its replicas by
    default), all ready."""
    info = _runtime_info(state_dir)
    store = _store(state_dir)
    namespace = namespace or info["namespace"]
    statefulset = statefulset or (info.get("statefulset") if namespace == info["namespace"] else None)
    if not statefulset:
        raise LocalPodsError(f"no StatefulSet to wait for in namespace {namespace} (give --statefulset)")
    deadline = time.monotonic() + timeout
    while True:
        if count is None:
            sts = store.get("StatefulSet", namespace, statefulset)
            if sts is None:
                raise LocalPodsError(f"no StatefulSet {namespace}/{statefulset}")
            count = int(sts["spec"].get("replicas", 1))
        current = pods(state_dir, namespace, statefulset)
        if len(current) == count and all(is_ready(p) for p in current):
            return
        if not _daemon_alive(info):
            raise LocalPodsError(f"the runtime daemon is gone; see {state_dir}/daemon.log")
        if time.monotonic() > deadline:
            states = ", ".join(f"{p['metadata']['name']}={'ready' if is_ready(p) else p.get('status', {}).get('phase')}" for p in current)
            raise LocalPodsError(f"not {count} ready pods after {timeout}s: {states or 'no pods'}")
        time.sleep(0.05)


def _daemon_alive(info: dict) -> bool:
    pid = info.get("daemon_pid")
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def up(manifest_dir: str | None, state_dir: str | None, replicas: int | None, timeout: float, wait: bool, options: list[str]) -> str:
    """Starts the daemon (with an empty store without ``manifest_dir``) and returns its state directory
    once it answers, and with ``wait`` once the imported StatefulSet's pods are ready."""
    state_dir = os.path.abspath(state_dir or tempfile.mkdtemp(prefix="localpods-"))
    os.makedirs(state_dir, exist_ok=True)
    argv = [sys.executable, os.path.abspath(__file__), "--state-dir", state_dir, "daemon", *([os.path.abspath(manifest_dir)] if manifest_dir else []), *options]
    if replicas is not None:
        argv += ["--replicas", str(replicas)]
    with open(os.path.join(state_dir, "daemon.out"), "ab") as out:
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)  # pylint: disable=consider-using-with
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(state_dir, "control.sock")):
        if daemon.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(state_dir, "daemon.out"), encoding="utf-8", errors="replace") as handle:
                raise LocalPodsError("the runtime daemon did not start:\n" + handle.read()[-3000:])
        time.sleep(0.02)
    if wait and _runtime_info(state_dir).get("statefulset"):
        wait_ready(state_dir, timeout=timeout)
    return state_dir


def down(state_dir: str, keep: bool = False, timeout: float = 120) -> None:
    # Imported here: exec needs neither.
    from tests.localpods.freezer import Freezer, FreezerError  # pylint: disable=import-outside-toplevel

    info = _runtime_info(state_dir)
    freezer = Freezer.recorded(info.get("freezer"))
    answered = True
    try:
        request(state_dir, "down")
    except LocalPodsError:
        answered = False
    deadline = time.monotonic() + timeout
    while _daemon_alive(info):
        if time.monotonic() > deadline:
            raise LocalPodsError(f"the runtime daemon (pid {info.get('daemon_pid')}) did not stop")
        time.sleep(0.05)
    # A daemon that died (killed, crashed) took none of its pods with it: they run on, adopted by
    # init, and would outlive the state directory and hold its loopback addresses. A frozen process
    # takes a SIGKILL only when thawed (cgroup v1): killed first, thawed then, it dies without running
    # again. The cgroups go last, once empty.
    if freezer is not None:
        for pid in freezer.all_members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        freezer.thaw_all()
    left = _kill_pod_processes(state_dir, freezer.all_members if freezer is not None else list)
    try:
        left_cgroups = freezer.remove() if freezer is not None else []
    except FreezerError as error:
        raise LocalPodsError(str(error)) from None
    if (left or left_cgroups) and answered:
        leftovers = " and ".join(([f"processes {left}"] if left else []) + ([f"cgroups {left_cgroups}"] if left_cgroups else []))
        raise LocalPodsError(f"the runtime daemon stopped but left {leftovers} of its pods behind (removed now); state kept in {state_dir}")
    if not keep:
        shutil.rmtree(state_dir, ignore_errors=True)


def _pod_processes(state_dir: str) -> list[int]:
    """The processes of this instance's pods, found without the daemon.

    A process belongs to a pod of this instance when its ``/etc/hosts`` is the file that the runtime
    bind-mounted there: ``hosts`` in a pod directory of this state directory, the same inode on the same
    device. No process of the host or of another instance has it.
    """
    hosts = set()
    for directory in pod_dirs(state_dir):
        with contextlib.suppress(OSError):
            stat = os.stat(os.path.join(directory, "hosts"))
            hosts.add((stat.st_dev, stat.st_ino))
    found = []
    for entry in os.listdir("/proc") if hosts else []:
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = os.stat(f"/proc/{entry}/root/etc/hosts")
                if (stat.st_dev, stat.st_ino) in hosts:
                    found.append(int(entry))
    return found


def _kill_pod_processes(state_dir: str, cgroup_members: Callable[[], list[int]] = list) -> list[int]:
    """SIGKILL to every process of this instance's pods (and of its cgroups, ``cgroup_members``),
    until none is left; the PIDs killed."""
    killed: list[int] = []
    for _attempt in range(100):
        victims = sorted(set(_pod_processes(state_dir)) | set(cgroup_members()))
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.05)
    return killed


def exec_in_pod(state_dir: str, pod: str, argv: list[str], namespace: str | None = None, container: str | None = None) -> None:
    """Runs argv inside a container of the pod (of runtime.json's namespace unless given; the pod's
    default container unless named) and exits with the command's exit code.

    Without a cgroup freezer this process is replaced by the command. With one, the command runs
    in a child that joins the pod's cgroup first (``_run_in_pod_cgroup``).
    """
    try:
        # The hot path reads no runtime.json: the pods of runtime.json's namespace are below pods/.
        path = os.path.join(state_dir, "pods", pod, "exec.json") if namespace is None else os.path.join(pod_dir(state_dir, pod, namespace), "exec.json")
    except LocalPodsError as error:
        sys.stderr.write(f"localpods: {error}\n")
        sys.exit(EXEC_FAILED)
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        sys.stderr.write(f"localpods: pod {pod} is not running\n")
        sys.exit(EXEC_FAILED)
    container = container or info.get("default_container")
    target = (info.get("containers") or {}).get(container) or {}
    if not target.get("running") or not info.get("pause_pid") or not os.path.exists(f"/proc/{info['pause_pid']}"):
        sys.stderr.write(f"localpods: container {container} of pod {pod} is not running\n")
        sys.exit(EXEC_FAILED)
    import pwd  # pylint: disable=import-outside-toplevel

    user = pwd.getpwnam("postgres")
    enter = [
        "nsenter",
        "-t",
        str(info["pause_pid"]),
        "-m",
        "-u",
        "--wd=/",
        "--",
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--no-new-privs",
        # Changing the user clears the parent-death signal; the cgroup path sets one before.
        "--pdeathsig=keep",
        "--",
        *argv,
    ]
    os.chdir("/")
    if target.get("cgroup_join_argv"):
        # Nothing to flush (the relay writes to the file descriptors): no interpreter shutdown.
        os._exit(_run_in_pod_cgroup(target["cgroup_procs"], target["cgroup_join_argv"] + enter, target["env"]))  # pylint: disable=protected-access
    # Python ignores SIGPIPE; the command gets the default, as in a container.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.execvpe(enter[0], enter, target["env"])


# Sent by a caller to this process, passed on to the command. SIGINT and SIGQUIT come from a
# terminal to the whole process group, the command's included, and are ignored here, as system(3) does.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _die_by(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _run_in_pod_cgroup(procs_file: str, join_and_enter: list[str], env: dict[str, str]) -> int:
    """Runs ``join_and_enter`` (it joins the pod's cgroup, then enters the pod) as a child; the
    child's exit code.

    A frozen pod freezes the command at once, but not this process: a caller that gives up at its
    own timeout and kills this process is rid of it at once, like a client of a frozen node. For
    that, the command's stdout and stderr (unless a terminal) pass through pipes that only this
    process holds the other ends of, so the caller's pipes close when it dies; and the command has
    SIGKILL as its parent-death signal (set before it joins), so it never runs after its caller left.
    A SIGTERM or SIGHUP is passed on to the command and awaited, unless the pod is frozen: then this
    process ends by it at once.
    """
    relays = {fd: os.pipe() for fd in (1, 2) if not os.isatty(fd)}
    for signum in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    argv = ["setpriv", "--pdeathsig=KILL", "--", *join_and_enter]
    child = os.fork()
    if child == 0:
        try:
            for fd, (read_end, write_end) in relays.items():
                os.dup2(write_end, fd)
                os.close(read_end)
                os.close(write_end)
            for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE):
                signal.signal(signum, signal.SIG_DFL)
            os.execvpe(argv[0], argv, env)
        except OSError as error:
            os.write(2, f"localpods: cannot run {argv[0]}: {error}\n".encode())
        os._exit(EXEC_FAILED)  # pylint: disable=protected-access

    def forward(signum: int, _frame: object) -> None:
        from tests.localpods.freezer import cgroup_is_frozen  # pylint: disable=import-outside-toplevel

        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)
        if cgroup_is_frozen(os.path.dirname(procs_file)):
            _die_by(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    for _fd, (_read_end, write_end) in relays.items():
        os.close(write_end)
    _relay({read_end: fd for fd, (read_end, _write_end) in relays.items()})
    _pid, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        # Killed by a signal: this process dies by the same one, as the command would have alone.
        _die_by(-code)
        return 128 - code
    return code


def _relay(sources: dict[int, int]) -> None:
    """Copies each source pipe to its target fd until end of file. A target that is gone (EPIPE)
    closes its source, so the writer gets EPIPE or SIGPIPE as if it wrote to the target itself."""
    poller = select.poll()
    for source in sources:
        poller.register(source, select.POLLIN)
    while sources:
        for source, _event in poller.poll():
            data = os.read(source, 65536)
            if data and _write_all(sources[source], data):
                continue
            poller.unregister(source)
            os.close(source)
            del sources[source]


def _write_all(fd: int, data: bytes) -> bool:
    """Writes all of data to fd; False when fd is gone."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        return False
    return True


def _fast_exec(argv: list[str]) -> None:
    """``--state-dir DIR exec POD -- ARGV`` without argparse: exec runs for every module call."""
    if len(argv) >= 5 and argv[0] == "--state-dir" and argv[2] == "exec" and "--" in argv[4:5]:
        exec_in_pod(argv[1], argv[3], argv[5:]) if argv[5:] else None


def _seconds_or_kubelet(text: str) -> float | None:
    """A period in seconds, or None for "kubelet": what Kubernetes would do."""
    if text == "kubelet":
        return None
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value


def main(argv: list[str] | None = None) -> int:
    _fast_exec(sys.argv[1:] if argv is None else argv)
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="localpods", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=os.environ.get("LOCALPODS_STATE_DIR"))
    # --state-dir is taken after the verb too (`up DIR --state-dir S`), without overriding one given before it.
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--state-dir", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = sub.add_parser

    def with_state_dir(name: str, **kwargs):
        kwargs["parents"] = [where, *kwargs.get("parents", [])]
        return add_parser(name, **kwargs)

    sub.add_parser = with_state_dir  # type: ignore[method-assign]
    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument(
        "--probe-period", type=_seconds_or_kubelet, default="kubelet", help="readiness probes' period in seconds; kubelet (default): each probe's periodSeconds"
    )
    timing.add_argument("--backoff-initial", type=float, default=0.5)
    timing.add_argument("--backoff-max", type=float, default=5.0)
    timing.add_argument(
        "--config-refresh",
        type=_seconds_or_kubelet,
        default=1.0,
        help="seconds between refreshes of a pod's ConfigMap and Secret volumes; kubelet: a delay drawn from 1-90 s per pod and refresh",
    )
    timing.add_argument("--seed", type=int, default=0, help="seed of the kubelet-like refresh delays")
    timing.add_argument("--no-liveness", action="store_true", help="run no liveness or startup probe (a container is never restarted by one)")
    timing.add_argument("--image-map", action="append", default=[], metavar="FILE", help="image map entries over tests/localpods/images.yaml (repeatable)")
    timing.add_argument("--grace-max", type=float, default=30.0, help="cap of terminationGracePeriodSeconds")
    timing.add_argument("--home-namespace", default="default", help="an empty runtime's namespace in runtime.json, which verbs address by default")
    # Which pods a verb acts on: runtime.json's namespace and StatefulSet unless given.
    in_namespace = argparse.ArgumentParser(add_help=False)
    in_namespace.add_argument("--namespace", help="the pod's namespace (default: runtime.json's)")
    of_statefulset = argparse.ArgumentParser(add_help=False, parents=[in_namespace])
    of_statefulset.add_argument("--statefulset", help="default: runtime.json's, in its namespace")
    p = sub.add_parser("up", parents=[timing])
    p.add_argument("manifest_dir", nargs="?", help="a render directory to import; none: an empty store")
    p.add_argument("--empty", action="store_true", help="start with an empty store (no MANIFEST_DIR)")
    p.add_argument("--replicas", type=int)
    p.add_argument("--timeout", type=float, default=180)
    p.add_argument("--no-wait", action="store_true")
    p = sub.add_parser("daemon", parents=[timing])
    p.add_argument("manifest_dir", nargs="?")
    p.add_argument("--replicas", type=int)
    p = sub.add_parser("status", parents=[of_statefulset])
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("wait", parents=[of_statefulset])
    p.add_argument("--replicas", type=int)
    p.add_argument("--timeout", type=float, default=120)
    p = sub.add_parser("exec", parents=[in_namespace])
    p.add_argument("-c", "--container", help="default: the pod's default container")
    p.add_argument("pod")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("logs", parents=[in_namespace])
    p.add_argument("pod")
    p.add_argument("container", nargs="?", default="postgres")
    for name in ("stop", "start", "delete-pod", "freeze", "thaw"):
        sub.add_parser(name, parents=[in_namespace]).add_argument("pod")
    p = sub.add_parser("kill", parents=[in_namespace])
    p.add_argument("pod")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("--target", choices=["postgres", "container"], default="postgres")
    p = sub.add_parser("hold-config", parents=[in_namespace], help="keep a pod's ConfigMap and Secret volumes as they are now (a stale kubelet)")
    p.add_argument("pod")
    p.add_argument("--release", action="store_true", help="refresh them again on the kubelet's schedule")
    p = sub.add_parser("delete-volume", parents=[in_namespace])
    p.add_argument("pod")
    p.add_argument("volume", nargs="?", default="pgdata")
    p = sub.add_parser("create-job", parents=[in_namespace], help="a Job from a CronJob's template now, as kubectl create job --from=cronjob/NAME")
    p.add_argument("name")
    p.add_argument("--from", dest="source", required=True, metavar="cronjob/NAME")
    p = sub.add_parser("scale", parents=[of_statefulset])
    p.add_argument("replicas", type=int)
    p = sub.add_parser("down")
    p.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)

    if args.command == "exec":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not args.state_dir or not command:
            sys.stderr.write("localpods: usage: --state-dir DIR exec POD -- ARGV...\n")
            return EXEC_FAILED
        exec_in_pod(args.state_dir, args.pod, command, args.namespace, args.container)
    options = []
    if args.command in ("up", "daemon"):
        options = [
            f"--probe-period={'kubelet' if args.probe_period is None else args.probe_period}",
            f"--backoff-initial={args.backoff_initial}",
            f"--backoff-max={args.backoff_max}",
            f"--config-refresh={'kubelet' if args.config_refresh is None else args.config_refresh}",
            f"--seed={args.seed}",
            f"--grace-max={args.grace_max}",
            f"--home-namespace={args.home_namespace}",
            *(["--no-liveness"] if args.no_liveness else []),
            *(f"--image-map={os.path.abspath(path)}" for path in args.image_map),
        ]
    try:
        if args.command == "up":
            if args.empty and args.manifest_dir:
                parser.error("up takes a MANIFEST_DIR or --empty, not both")
            print(up(args.manifest_dir, args.state_dir, args.replicas, args.timeout, not args.no_wait, options))
            return 0
        if not args.state_dir:
            parser.error("--state-dir (or LOCALPODS_STATE_DIR) is required")
        if args.command == "daemon":
            from tests.localpods.images import ImageMap  # pylint: disable=import-outside-toplevel
            from tests.localpods.runtime import Options, Runtime  # pylint: disable=import-outside-toplevel

            options = Options(
                probe_period=args.probe_period,
                backoff_initial=args.backoff_initial,
                backoff_max=args.backoff_max,
                config_refresh=args.config_refresh,
                grace_max=args.grace_max,
                seed=args.seed,
                liveness=not args.no_liveness,
                images=ImageMap(args.image_map),
            )
            runtime = Runtime(
                args.state_dir,
                args.manifest_dir,
                options,
                args.replicas,
                home_namespace=args.home_namespace,
            )
            runtime.serve()
            return 0
        if args.command == "status":
            current = observed_pods(args.state_dir, args.namespace, args.statefulset)
            if args.json:
                print(json.dumps(current, indent=2))
            else:
                print(f"{'NAME':<16}{'READY':<7}{'STATUS':<18}{'RESTARTS':<10}IP")
                for pod in current:
                    status = pod.get("status") or {}
                    main_status = (status.get("containerStatuses") or [{}])[0]
                    state = main_status.get("state") or {}
                    reason = (state.get("waiting") or {}).get("reason") or status.get("phase")
                    ready = "1/1" if is_ready(pod) else "0/1"
                    restarts = main_status.get("restartCount", 0)
                    print(f"{pod['metadata']['name']:<16}{ready:<7}{reason:<18}{restarts:<10}{status.get('podIP', '')}")
            return 0
        if args.command == "wait":
            wait_ready(args.state_dir, args.replicas, args.timeout, args.namespace, args.statefulset)
            return 0
        if args.command == "logs":
            with open(
                os.path.join(pod_dir(args.state_dir, args.pod, args.namespace), "logs", args.container + ".log"), encoding="utf-8", errors="replace"
            ) as handle:
                sys.stdout.write(handle.read())
            return 0
        if args.command == "down":
            down(args.state_dir, args.keep)
            return 0
        if args.command == "create-job":
            from tests.localpods._api import LocalApiError  # pylint: disable=import-outside-toplevel
            from tests.localpods.workloads import job_from_cronjob  # pylint: disable=import-outside-toplevel

            kind, _slash, source = args.source.partition("/")
            if kind not in ("cronjob", "cronjobs", "cj") or not source:
                raise LocalPodsError(f"--from {args.source}: only cronjob/NAME is supported")
            namespace = args.namespace or _runtime_info(args.state_dir)["namespace"]
            store = _store(args.state_dir)
            cronjob = store.get("CronJob", namespace, source)
            if cronjob is None:
                raise LocalPodsError(f'cronjobs.batch "{source}" not found in namespace {namespace}')
            try:
                store.create(job_from_cronjob(cronjob, args.name, manual=True))
            except LocalApiError as error:
                raise LocalPodsError(f"create job {args.name}: {error}") from None
            print(f"job.batch/{args.name} created")
            return 0
        if args.command == "scale":
            if not 0 <= args.replicas <= max_members():
                raise LocalPodsError(f"scale {args.replicas}: the number of members must be from 0 to {max_members()} (the role's limit)")
            info = _runtime_info(args.state_dir)
            namespace = args.namespace or info["namespace"]
            statefulset = args.statefulset or (info.get("statefulset") if namespace == info["namespace"] else None)
            if not statefulset:
                raise LocalPodsError(f"no StatefulSet to scale in namespace {namespace} (give --statefulset)")
            _store(args.state_dir).patch_merge("StatefulSet", namespace, statefulset, {"spec": {"replicas": args.replicas}})
            return 0
        extra = {}
        if args.command == "kill":
            extra = {"signal": args.signal, "target": args.target}
        if args.command == "delete-volume":
            extra = {"volume": args.volume}
        if args.command == "hold-config":
            extra = {"hold": not args.release}
        if args.namespace:
            extra["namespace"] = args.namespace
        response = request(args.state_dir, args.command, pod=args.pod, **extra)
        if response.get("pids"):
            print(" ".join(str(pid) for pid in response["pids"]))
        return 0
    except LocalPodsError as error:
        sys.stderr.write(f"localpods: {error}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
