"""The cgroup freezer of the local pod runtime: one cgroup per pod, frozen and thawed as a whole.

A runtime makes one cgroup of its own, ``dbonk8s-localpods-<random id>``, at the top of a freezer
hierarchy (cgroup v1's ``freezer`` controller, else cgroup v2, where every cgroup below the root has
``cgroup.freeze``), one child cgroup per pod, named after the pod, and below it one cgroup per
container of the pod. The pause process joins the pod's cgroup, every process of a container the
container's (``join_argv``) as it starts, so whatever it forks belongs there too: freezing the pod's
cgroup stops all of them, including the ones that join after the freeze, and a container's
processes are known when it must be stopped alone.

Only the standard library: the exec path of the CLI imports this module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time

CGROUP_PREFIX = "dbonk8s-localpods-"
# v1, v2 or none: which hierarchy a runtime uses (tests of each kind, machines with a broken one).
# Unset or "auto": cgroup v1's freezer when it is mounted, else cgroup v2.
CHOICE_VARIABLE = "LOCALPODS_FREEZER"
KINDS = ("v1", "v2")


class FreezerError(Exception):
    """A freeze, thaw or removal that could not be done; the message is one sentence."""


def cgroup_mounts() -> list[tuple[str, str]]:
    """(kind, mount point) of every cgroup v1 freezer hierarchy and cgroup v2 hierarchy mounted."""
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 4:
                continue
            mount_point, fstype, options = fields[1], fields[2], fields[3].split(",")
            if fstype == "cgroup" and "freezer" in options:
                found.append(("v1", mount_point))
            elif fstype == "cgroup2":
                found.append(("v2", mount_point))
    return found


def join_argv(procs_file: str, argv: list[str]) -> list[str]:
    """argv started inside a cgroup: a shell writes its own PID into the cgroup's ``cgroup.procs``
    and then execs argv, so argv and everything it forks belong to the cgroup from their first
    instruction on (a frozen cgroup stops the shell right after the write)."""
    script = '{ echo $$ > "$0"; } 2>/dev/null || { echo "localpods: cannot join the pod\'s cgroup $0 (is the pod running?)" >&2; exit 255; }; exec "$@"'
    return ["/bin/sh", "-c", script, procs_file, *argv]


def cgroup_is_frozen(cgroup: str) -> bool:
    """Whether a cgroup directory of either kind is frozen (or on its way, for cgroup v1)."""
    for name, frozen_states in (("freezer.state", ("FROZEN", "FREEZING")), ("cgroup.freeze", ("1",))):
        with contextlib.suppress(FileNotFoundError):
            return _read(os.path.join(cgroup, name)).strip() in frozen_states
    return False


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


class Freezer:
    """This runtime's cgroup ``root`` in a hierarchy of ``kind`` v1 or v2, and its pods' cgroups."""

    def __init__(self, kind: str, root: str) -> None:
        self.kind = kind
        self.root = root

    @classmethod
    def create(cls) -> tuple[Freezer | None, str]:
        """Makes a new cgroup for one runtime: (freezer, "") or (None, why none is usable)."""
        choice = os.environ.get(CHOICE_VARIABLE) or "auto"
        if choice == "none":
            return None, f"{CHOICE_VARIABLE}=none"
        if choice not in ("auto", *KINDS):
            return None, f"{CHOICE_VARIABLE}={choice} is none of auto, v1, v2, none"
        kinds = KINDS if choice == "auto" else (choice,)
        name = CGROUP_PREFIX + os.urandom(6).hex()
        problems = []
        for kind in kinds:
            for mount_kind, mount_point in cgroup_mounts():
                if mount_kind != kind:
                    continue
                freezer = cls(kind, os.path.join(mount_point, name))
                try:
                    os.mkdir(freezer.root, 0o755)
                except OSError as error:
                    problems.append(f"cannot make a cgroup in {mount_point}: {error.strerror}")
                    continue
                try:
                    # A cgroup v2 without cgroup.freeze (Linux before 5.2) cannot freeze.
                    freezer._write_state(freezer.root, frozen=False)
                except OSError as error:
                    os.rmdir(freezer.root)
                    problems.append(f"{mount_point} cannot freeze: {error.strerror}")
                    continue
                return freezer, ""
        if not problems:
            if choice == "auto":
                problems.append("neither a cgroup v1 freezer hierarchy nor a cgroup v2 hierarchy is mounted")
            else:
                problems.append(f"no cgroup {choice} hierarchy is mounted")
        return None, "; ".join(problems)

    def describe(self) -> dict[str, str]:
        """What runtime.json records, for ``recorded``."""
        return {"kind": self.kind, "root": self.root}

    @classmethod
    def recorded(cls, record: object) -> Freezer | None:
        """The freezer that runtime.json records, or None; also None when the record does not name a
        cgroup of this runtime's kind (its name, at the top of a mounted hierarchy): whatever the file
        says, no other cgroup is ever touched."""
        if not isinstance(record, dict):
            return None
        kind, root = record.get("kind"), record.get("root")
        if not isinstance(root, str) or not os.path.basename(root).startswith(CGROUP_PREFIX):
            return None
        if (kind, os.path.dirname(root)) not in cgroup_mounts():
            return None
        return cls(str(kind), root)

    # -- one pod's cgroup ---------------------------------------------------------------------

    def pod_cgroup(self, pod: str) -> str:
        return os.path.join(self.root, pod)

    def make_pod_cgroup(self, pod: str) -> str:
        """Makes the pod's cgroup (thawed: a new pod runs whatever became of its predecessor) and
        returns its ``cgroup.procs``, the file that ``join_argv`` writes."""
        cgroup = self.pod_cgroup(pod)
        with contextlib.suppress(FileExistsError):
            os.mkdir(cgroup, 0o755)
        self.set_frozen(pod, False)
        return os.path.join(cgroup, "cgroup.procs")

    def make_container_cgroup(self, pod: str, container: str) -> str:
        """Makes the cgroup of one container below the pod's and returns its ``cgroup.procs``."""
        cgroup = os.path.join(self.pod_cgroup(pod), container)
        with contextlib.suppress(FileExistsError):
            os.mkdir(cgroup, 0o755)
        return os.path.join(cgroup, "cgroup.procs")

    def members(self, pod: str) -> list[int]:
        """The PIDs in the pod's cgroup and its containers' (none when it does not exist)."""
        return [pid for cgroup in self._subtree(self.pod_cgroup(pod)) for pid in self._members(cgroup)]

    def container_members(self, pod: str, container: str) -> list[int]:
        """The PIDs in one container's cgroup."""
        return self._members(os.path.join(self.pod_cgroup(pod), container))

    def is_frozen(self, pod: str) -> bool:
        return cgroup_is_frozen(self.pod_cgroup(pod))

    def set_frozen(self, pod: str, frozen: bool, timeout: float = 10.0) -> None:
        """Freezes or thaws the pod's cgroup and waits until every process in it is; idempotent. A
        freeze that does not complete within ``timeout`` is undone (thawed) and raises."""
        cgroup = self.pod_cgroup(pod)
        verb = "freeze" if frozen else "thaw"
        deadline = time.monotonic() + timeout
        try:
            while True:
                # cgroup v1: writing FROZEN again retries the processes that have not stopped yet.
                self._write_state(cgroup, frozen)
                if self._settled(cgroup, frozen):
                    return
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        except FileNotFoundError:
            raise FreezerError(f"pod {pod} has no cgroup {cgroup} (it is not running)") from None
        except OSError as error:
            raise FreezerError(f"cannot {verb} pod {pod} through {cgroup}: {error.strerror}") from None
        if frozen:
            with contextlib.suppress(OSError):
                self._write_state(cgroup, False)
            raise FreezerError(f"pod {pod} did not freeze within {timeout:g}s (a process in uninterruptible sleep?) and was thawed again")
        raise FreezerError(f"pod {pod} did not thaw within {timeout:g}s")

    def remove_pod_cgroup(self, pod: str, timeout: float = 5.0) -> None:
        """Removes the pod's cgroup and its containers', once the processes in them are gone; raises
        when they stay."""
        deadline = time.monotonic() + timeout
        for cgroup in self._subtree(self.pod_cgroup(pod)):
            self._remove(cgroup, max(deadline - time.monotonic(), 0.5))

    # -- the whole runtime --------------------------------------------------------------------

    def pod_cgroups(self) -> list[str]:
        """The paths of the pods' cgroups that exist."""
        try:
            return sorted(entry.path for entry in os.scandir(self.root) if entry.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def existing(self) -> list[str]:
        """This runtime's cgroups that exist: its pods', their containers' and its own."""
        return [cgroup for pod in self.pod_cgroups() for cgroup in self._subtree(pod)] + ([self.root] if os.path.isdir(self.root) else [])

    def all_members(self) -> list[int]:
        return [pid for pod in self.pod_cgroups() for cgroup in self._subtree(pod) for pid in self._members(cgroup)]

    def thaw_all(self) -> None:
        """Thaws every pod's cgroup: a frozen process takes a SIGKILL only once thawed (cgroup v1)."""
        for cgroup in self.pod_cgroups():
            with contextlib.suppress(FreezerError):
                self.set_frozen(os.path.basename(cgroup), False)

    def remove(self, timeout: float = 10.0) -> list[str]:
        """Thaws and removes every cgroup of this runtime, after a SIGKILL (by PID) to each process
        still in one: they were all started by the runtime. Returns the cgroups that existed; raises
        FreezerError when one could not be removed."""
        found = self.existing()
        self.thaw_all()
        deadline = time.monotonic() + timeout
        for cgroup in [cgroup for pod in self.pod_cgroups() for cgroup in self._subtree(pod)]:
            while True:
                members = self._members(cgroup)
                if not members:
                    break
                if time.monotonic() > deadline:
                    raise FreezerError(f"processes {members} stay in {cgroup} despite SIGKILL")
                for pid in members:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
            self._remove(cgroup, max(deadline - time.monotonic(), 0.5))
        if os.path.isdir(self.root):
            self._remove(self.root, max(deadline - time.monotonic(), 0.5))
        return found

    # -- the files of a cgroup ----------------------------------------------------------------

    def _write_state(self, cgroup: str, frozen: bool) -> None:
        if self.kind == "v1":
            _write(os.path.join(cgroup, "freezer.state"), "FROZEN" if frozen else "THAWED")
        else:
            _write(os.path.join(cgroup, "cgroup.freeze"), "1" if frozen else "0")

    def _settled(self, cgroup: str, frozen: bool) -> bool:
        """True once every process of the cgroup has stopped (frozen) or runs again (thawed)."""
        if self.kind == "v1":
            return _read(os.path.join(cgroup, "freezer.state")).strip() == ("FROZEN" if frozen else "THAWED")
        events = dict(line.split(" ", 1) for line in _read(os.path.join(cgroup, "cgroup.events")).splitlines() if " " in line)
        return events.get("frozen", "").strip() == ("1" if frozen else "0")

    @staticmethod
    def _subtree(cgroup: str) -> list[str]:
        """``cgroup`` and the cgroups below it, the deepest first (the order they can be removed in)."""
        found: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(cgroup):
                if entry.is_dir(follow_symlinks=False):
                    found.extend(Freezer._subtree(entry.path))
        if os.path.isdir(cgroup):
            found.append(cgroup)
        return found

    @staticmethod
    def _members(cgroup: str) -> list[int]:
        try:
            return [int(line) for line in _read(os.path.join(cgroup, "cgroup.procs")).split()]
        except FileNotFoundError:
            return []

    @staticmethod
    def _remove(cgroup: str, timeout: float) -> None:
        # rmdir fails with EBUSY for a moment after the last process exited.
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(cgroup)
                return
            except FileNotFoundError:
                return
            except OSError as error:
                if error.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise FreezerError(f"cannot remove cgroup {cgroup}: {error.strerror}") from None
            time.sleep(0.02)
