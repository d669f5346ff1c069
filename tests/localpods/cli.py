#!/usr/bin/env python
"""Command line of the local pod runtime.

cli.py up MANIFEST_DIR [--state-dir DIR] [--replicas N]   start the daemon, wait until healthy
cli.py --state-dir DIR status|wait|exec|logs|stop|start|kill|delete-pod|delete-volume|scale|down
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

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
    response = json.loads(data or b'{"ok": false, "error": "no answer"}')
    if not response.get("ok"):
        raise LocalPodsError(response.get("error", "failed"))
    return response


def _store(state_dir: str):
    # Imported here: exec, the hot path of the modules and the probes, needs no store.
    from tests.localpods._api import LocalApiStore  # pylint: disable=import-outside-toplevel

    return LocalApiStore(os.path.join(state_dir, "api"))


def pods(state_dir: str) -> list[dict]:
    info = _runtime_info(state_dir)
    store = _store(state_dir)
    prefix = info["statefulset"] + "-"
    return sorted(
        (p for p in store.list("Pod", info["namespace"]) if p["metadata"]["name"].startswith(prefix)), key=lambda p: int(p["metadata"]["name"][len(prefix) :])
    )


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def wait_ready(state_dir: str, count: int | None = None, timeout: float = 120) -> None:
    info = _runtime_info(state_dir)
    store = _store(state_dir)
    deadline = time.monotonic() + timeout
    while True:
        if count is None:
            sts = store.get("StatefulSet", info["namespace"], info["statefulset"])
            count = int(sts["spec"].get("replicas", 1))
        current = pods(state_dir)
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


def up(manifest_dir: str, state_dir: str | None, replicas: int | None, timeout: float, wait: bool, options: list[str]) -> str:
    state_dir = os.path.abspath(state_dir or tempfile.mkdtemp(prefix="localpods-"))
    os.makedirs(state_dir, exist_ok=True)
    argv = [sys.executable, os.path.abspath(__file__), "--state-dir", state_dir, "daemon", os.path.abspath(manifest_dir), *options]
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
    if wait:
        wait_ready(state_dir, timeout=timeout)
    return state_dir


def down(state_dir: str, keep: bool = False, timeout: float = 120) -> None:
    info = _runtime_info(state_dir)
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
    # init, and would outlive the state directory and hold its loopback addresses.
    left = _kill_pod_processes(state_dir)
    if left and answered:
        raise LocalPodsError(f"the runtime daemon stopped but left processes {left} of its pods behind (killed now); state kept in {state_dir}")
    if not keep:
        shutil.rmtree(state_dir, ignore_errors=True)


def _pod_processes(state_dir: str) -> list[int]:
    """The processes of this instance's pods, found without the daemon.

    A process belongs to a pod of this instance when its ``/etc/hosts`` is the file that the runtime
    bind-mounted there: ``pods/<pod>/hosts`` of this state directory, the same inode on the same
    device. No process of the host or of another instance has it.
    """
    hosts = set()
    pods_dir = os.path.join(state_dir, "pods")
    for pod in os.listdir(pods_dir) if os.path.isdir(pods_dir) else []:
        with contextlib.suppress(OSError):
            stat = os.stat(os.path.join(pods_dir, pod, "hosts"))
            hosts.add((stat.st_dev, stat.st_ino))
    found = []
    for entry in os.listdir("/proc") if hosts else []:
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = os.stat(f"/proc/{entry}/root/etc/hosts")
                if (stat.st_dev, stat.st_ino) in hosts:
                    found.append(int(entry))
    return found


def _kill_pod_processes(state_dir: str) -> list[int]:
    """SIGKILL to every process of this instance's pods, until none is left; the PIDs killed."""
    killed: list[int] = []
    for _attempt in range(100):
        victims = _pod_processes(state_dir)
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.05)
    return killed


def exec_in_pod(state_dir: str, pod: str, argv: list[str]) -> None:
    """Replaces this process with argv inside the pod, so its exit code is the command's."""
    path = os.path.join(state_dir, "pods", pod, "exec.json")
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        sys.stderr.write(f"localpods: pod {pod} is not running\n")
        sys.exit(EXEC_FAILED)
    if not info.get("running") or not info.get("pause_pid") or not os.path.exists(f"/proc/{info['pause_pid']}"):
        sys.stderr.write(f"localpods: container {info.get('container')} of pod {pod} is not running\n")
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
        "--",
        *argv,
    ]
    os.chdir("/")
    os.execvpe(enter[0], enter, info["env"])


def _fast_exec(argv: list[str]) -> None:
    """``--state-dir DIR exec POD -- ARGV`` without argparse: exec runs for every module call."""
    if len(argv) >= 5 and argv[0] == "--state-dir" and argv[2] == "exec" and "--" in argv[4:5]:
        exec_in_pod(argv[1], argv[3], argv[5:]) if argv[5:] else None


def main(argv: list[str] | None = None) -> int:
    _fast_exec(sys.argv[1:] if argv is None else argv)
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="localpods", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=os.environ.get("LOCALPODS_STATE_DIR"))
    sub = parser.add_subparsers(dest="command", required=True)
    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--probe-period", type=float, default=0.25, help="readiness probe period (the rendered periodSeconds is meant for real clusters)")
    timing.add_argument("--backoff-initial", type=float, default=0.5)
    timing.add_argument("--backoff-max", type=float, default=5.0)
    timing.add_argument("--config-refresh", type=float, default=1.0, help="seconds between refreshes of ConfigMap volumes")
    timing.add_argument("--grace-max", type=float, default=30.0, help="cap of terminationGracePeriodSeconds")
    p = sub.add_parser("up", parents=[timing])
    p.add_argument("manifest_dir")
    p.add_argument("--replicas", type=int)
    p.add_argument("--timeout", type=float, default=180)
    p.add_argument("--no-wait", action="store_true")
    p = sub.add_parser("daemon", parents=[timing])
    p.add_argument("manifest_dir")
    p.add_argument("--replicas", type=int)
    p = sub.add_parser("status")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("wait")
    p.add_argument("--replicas", type=int)
    p.add_argument("--timeout", type=float, default=120)
    p = sub.add_parser("exec")
    p.add_argument("pod")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("logs")
    p.add_argument("pod")
    p.add_argument("container", nargs="?", default="postgres")
    for name in ("stop", "start", "delete-pod"):
        sub.add_parser(name).add_argument("pod")
    p = sub.add_parser("kill")
    p.add_argument("pod")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("--target", choices=["postgres", "container"], default="postgres")
    p = sub.add_parser("delete-volume")
    p.add_argument("pod")
    p.add_argument("volume", nargs="?", default="pgdata")
    p = sub.add_parser("scale")
    p.add_argument("replicas", type=int)
    p = sub.add_parser("down")
    p.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)

    if args.command == "exec":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not args.state_dir or not command:
            sys.stderr.write("localpods: usage: --state-dir DIR exec POD -- ARGV...\n")
            return EXEC_FAILED
        exec_in_pod(args.state_dir, args.pod, command)
    options = []
    if args.command in ("up", "daemon"):
        options = [
            f"--probe-period={args.probe_period}",
            f"--backoff-initial={args.backoff_initial}",
            f"--backoff-max={args.backoff_max}",
            f"--config-refresh={args.config_refresh}",
            f"--grace-max={args.grace_max}",
        ]
    try:
        if args.command == "up":
            print(up(args.manifest_dir, args.state_dir, args.replicas, args.timeout, not args.no_wait, options))
            return 0
        if not args.state_dir:
            parser.error("--state-dir (or LOCALPODS_STATE_DIR) is required")
        if args.command == "daemon":
            from tests.localpods.runtime import Options, Runtime  # pylint: disable=import-outside-toplevel

            runtime = Runtime(
                args.state_dir,
                args.manifest_dir,
                Options(args.probe_period, args.backoff_initial, args.backoff_max, args.config_refresh, args.grace_max),
                args.replicas,
            )
            runtime.serve()
            return 0
        if args.command == "status":
            current = pods(args.state_dir)
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
            wait_ready(args.state_dir, args.replicas, args.timeout)
            return 0
        if args.command == "logs":
            with open(os.path.join(args.state_dir, "pods", args.pod, "logs", args.container + ".log"), encoding="utf-8", errors="replace") as handle:
                sys.stdout.write(handle.read())
            return 0
        if args.command == "down":
            down(args.state_dir, args.keep)
            return 0
        if args.command == "scale":
            info = _runtime_info(args.state_dir)
            _store(args.state_dir).patch_merge("StatefulSet", info["namespace"], info["statefulset"], {"spec": {"replicas": args.replicas}})
            return 0
        extra = {}
        if args.command == "kill":
            extra = {"signal": args.signal, "target": args.target}
        if args.command == "delete-volume":
            extra = {"volume": args.volume}
        response = request(args.state_dir, args.command, pod=args.pod, **extra)
        if response.get("pids"):
            print(" ".join(str(pid) for pid in response["pids"]))
        return 0
    except LocalPodsError as error:
        sys.stderr.write(f"localpods: {error}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
