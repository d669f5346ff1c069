"""The object store of the local pod runtime: API-shaped objects in files, and the journal that watches read.

Objects are ``<root>/<namespace>/<kind lowercased>/<name>.json``; cluster-scoped objects live under the
namespace ``_cluster``. Every write takes an exclusive ``fcntl.flock`` on ``<root>/.lock`` and replaces
the file atomically, so readers never take the lock and see either the old or the new object. Every write
bumps one global ``resourceVersion`` counter, as etcd's revision does, and is recorded in an in-memory
journal of recent events (ADDED, MODIFIED, DELETED) that the API server's watches replay; a watch from a
version older than the journal gets 410 Gone, as from the real server after compaction.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import datetime
import fcntl
import json
import os
import tempfile
import threading
import uuid
from typing import Iterator

from tests.localpods.api.errors import ApiError
from tests.localpods.api.patches import merge_patch

__all__ = ["CLUSTER", "ApiError", "LocalApiError", "LocalApiStore", "merge_patch"]

#: The directory of cluster-scoped objects (Namespaces, PersistentVolumes, ClusterRoles).
CLUSTER = "_cluster"
JOURNAL_LENGTH = 20000
# The old name, kept for the runtime's callers.
LocalApiError = ApiError


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(obj: dict, label_selector: dict[str, str] | None) -> bool:
    if not label_selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in label_selector.items())


class Journal:
    """Recent events of one store root, shared by every store object of this process on that root."""

    _by_root: dict[str, "Journal"] = {}
    _by_root_lock = threading.Lock()

    def __init__(self) -> None:
        self.events: collections.deque[dict] = collections.deque(maxlen=JOURNAL_LENGTH)
        self.changed = threading.Condition()
        # The resourceVersion before the oldest event kept: a watch from before it cannot be served.
        self.horizon = 0

    @classmethod
    def of(cls, root: str) -> "Journal":
        with cls._by_root_lock:
            journal = cls._by_root.get(root)
            if journal is None:
                journal = cls._by_root[root] = cls()
            return journal

    def record(self, event_type: str, obj: dict) -> None:
        with self.changed:
            if len(self.events) == self.events.maxlen:
                self.horizon = int(self.events[0]["object"]["metadata"]["resourceVersion"])
            self.events.append({"type": event_type, "object": copy.deepcopy(obj)})
            self.changed.notify_all()

    def since(self, resource_version: int) -> list[dict] | None:
        """Events after ``resource_version`` in order, or None when they are no longer all kept."""
        with self.changed:
            if resource_version < self.horizon:
                return None
            return [event for event in self.events if int(event["object"]["metadata"]["resourceVersion"]) > resource_version]

    def wait(self, resource_version: int, timeout: float) -> None:
        """Returns once an event after ``resource_version`` exists, or after ``timeout`` seconds."""
        with self.changed:
            if self.events and int(self.events[-1]["object"]["metadata"]["resourceVersion"]) > resource_version:
                return
            self.changed.wait(timeout)


class LocalApiStore:
    """Objects stored as ``<root>/<namespace>/<kind lowercased>/<name>.json``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.journal = Journal.of(self.root)

    # -- paths and locking -------------------------------------------------------------------

    def _kind_dir(self, kind: str, namespace: str) -> str:
        for part in (kind, namespace):
            if not part or "/" in part or part.startswith("."):
                raise ApiError(422, "Invalid", f"invalid kind or namespace: {part!r}")
        return os.path.join(self.root, namespace, kind.lower())

    def _path(self, kind: str, namespace: str, name: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise ApiError(422, "Invalid", f"invalid name: {name!r}")
        return os.path.join(self._kind_dir(kind, namespace), name + ".json")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The store's write lock: a caller that reads, decides and writes holds it throughout."""
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, ".lock"), "a+", encoding="utf-8") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    _locked = locked

    def current_resource_version(self) -> str:
        try:
            with open(os.path.join(self.root, ".resource-version"), encoding="utf-8") as counter_file:
                return counter_file.read().strip() or "0"
        except FileNotFoundError:
            return "0"

    def _next_resource_version(self) -> str:
        """Bump the global counter; caller holds the lock."""
        new = int(self.current_resource_version()) + 1
        self._atomic_write(os.path.join(self.root, ".resource-version"), str(new))
        return str(new)

    @staticmethod
    def _atomic_write(path: str, text: str) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as tmp_file:
                tmp_file.write(text)
            # Readers in other processes (the pod runtime runs as root, tests may not) must see it.
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
            raise

    @staticmethod
    def _read(path: str) -> dict | None:
        try:
            with open(path, encoding="utf-8") as obj_file:
                return json.load(obj_file)
        except FileNotFoundError:
            return None

    def _write(self, path: str, obj: dict, event_type: str) -> dict:
        obj["metadata"]["resourceVersion"] = self._next_resource_version()
        self._atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
        self.journal.record(event_type, obj)
        return copy.deepcopy(obj)

    @staticmethod
    def _identity(obj: dict) -> tuple[str, str, str]:
        if not isinstance(obj, dict):
            raise ApiError(422, "Invalid", "object must be a mapping")
        metadata = obj.get("metadata") or {}
        kind, namespace, name = obj.get("kind"), metadata.get("namespace") or CLUSTER, metadata.get("name")
        if not kind or not name:
            raise ApiError(422, "Invalid", "object needs kind and metadata.name")
        return kind, namespace, name

    # -- the API -----------------------------------------------------------------------------

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        return self._read(self._path(kind, namespace or CLUSTER, name))

    def list(self, kind: str, namespace: str | None, label_selector: dict[str, str] | None = None) -> list[dict]:
        """Objects of ``kind`` in ``namespace`` (``None``: cluster-scoped ones)."""
        directory = self._kind_dir(kind, namespace or CLUSTER)
        try:
            names = sorted(entry for entry in os.listdir(directory) if entry.endswith(".json") and not entry.startswith("."))
        except FileNotFoundError:
            return []
        items = []
        for entry in names:
            obj = self._read(os.path.join(directory, entry))
            if obj is not None and _matches(obj, label_selector):
                items.append(obj)
        return items

    def list_all_namespaces(self, kind: str) -> list[dict]:
        items: list[dict] = []
        for namespace in self.namespaces():
            if namespace != CLUSTER:
                items.extend(self.list(kind, namespace))
        return items

    def namespaces(self) -> list[str]:
        """Directories holding objects: namespaces with at least one object, and ``_cluster``."""
        try:
            return sorted(entry for entry in os.listdir(self.root) if not entry.startswith(".") and os.path.isdir(os.path.join(self.root, entry)))
        except FileNotFoundError:
            return []

    def kinds_in(self, namespace: str) -> list[str]:
        """The lowercased kinds that have a directory in ``namespace``."""
        try:
            return sorted(os.listdir(os.path.join(self.root, namespace)))
        except FileNotFoundError:
            return []

    def create(self, obj: dict) -> dict:
        kind, namespace, name = self._identity(obj)
        path = self._path(kind, namespace, name)
        with self.locked():
            if os.path.exists(path):
                raise ApiError(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')
            new = copy.deepcopy(obj)
            metadata = new["metadata"]
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", now_rfc3339())
            metadata.pop("resourceVersion", None)
            return self._write(path, new, "ADDED")

    def replace(self, obj: dict) -> dict:
        kind, namespace, name = self._identity(obj)
        path = self._path(kind, namespace, name)
        with self.locked():
            stored = self._read(path)
            if stored is None:
                raise ApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            wanted_version = obj["metadata"].get("resourceVersion")
            if wanted_version != stored["metadata"].get("resourceVersion"):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.lower()}s "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            new = copy.deepcopy(obj)
            # The server owns identity fields; a client cannot rewrite them by replacing.
            for field in ("uid", "creationTimestamp"):
                if field in stored["metadata"]:
                    new["metadata"][field] = stored["metadata"][field]
            return self._write(path, new, "MODIFIED")

    def write_locked(self, obj: dict) -> dict:
        """Stores ``obj`` as it is (identity and all), for a caller that holds :meth:`locked` and checked preconditions."""
        kind, namespace, name = self._identity(obj)
        path = self._path(kind, namespace, name)
        event = "MODIFIED" if os.path.exists(path) else "ADDED"
        return self._write(path, copy.deepcopy(obj), event)

    def delete_locked(self, kind: str, namespace: str | None, name: str) -> dict:
        """Removes an object for a caller that holds :meth:`locked`; the DELETED event carries a new resourceVersion."""
        path = self._path(kind, namespace or CLUSTER, name)
        stored = self._read(path)
        if stored is None:
            raise ApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
        os.unlink(path)
        stored["metadata"]["resourceVersion"] = self._next_resource_version()
        self.journal.record("DELETED", stored)
        return stored

    def patch_merge(self, kind: str, namespace: str | None, name: str, patch: dict) -> dict:
        path = self._path(kind, namespace or CLUSTER, name)
        with self.locked():
            stored = self._read(path)
            if stored is None:
                raise ApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            # As on the API server, a resourceVersion inside the patch is a precondition.
            wanted_version = ((patch or {}).get("metadata") or {}).get("resourceVersion")
            if wanted_version is not None and wanted_version != stored["metadata"].get("resourceVersion"):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.lower()}s "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            patched = merge_patch(stored, patch)
            if not isinstance(patched, dict) or patched.get("kind") != stored.get("kind") or (patched.get("metadata") or {}).get("name") != name:
                raise ApiError(422, "Invalid", "a patch cannot change kind or metadata.name")
            for field in ("uid", "creationTimestamp", "namespace"):
                if field in stored["metadata"]:
                    patched["metadata"][field] = stored["metadata"][field]
            if patched == stored:
                # The API server does not bump the resourceVersion of a write that changes nothing.
                return copy.deepcopy(stored)
            return self._write(path, patched, "MODIFIED")

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        with self.locked():
            self.delete_locked(kind, namespace, name)
