# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A file-backed store of API-shaped objects: the fake Kubernetes API of the local pod runtime.

Both the local pod runtime (writer of pod status) and the modules (writers of labels, ConfigMaps,
Services) use it at the same time from different processes, so every write happens under an
exclusive ``fcntl.flock`` on ``<root>/.lock`` and replaces files atomically. Readers never take the
lock: ``os.replace`` guarantees they see either the old or the new object, never half of one.

Objects keep the JSON shapes of the real API (``metadata.resourceVersion`` is a string, the
optimistic concurrency rules of ``replace`` are the API server's), so code written against this
store behaves the same against a real cluster.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import fcntl
import json
import os
import tempfile
import uuid
from typing import Any, Iterator

__all__ = ["LocalApiError", "LocalApiStore", "merge_patch"]


class LocalApiError(Exception):
    """An API error with the HTTP status and reason the real API server would have returned."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch and return the result (the inputs are not modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(obj: dict, label_selector: dict[str, str] | None) -> bool:
    if not label_selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in label_selector.items())


class LocalApiStore:
    """Objects stored as ``<root>/<namespace>/<kind lowercased>/<name>.json``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    # -- paths and locking -------------------------------------------------------------------

    def _kind_dir(self, kind: str, namespace: str) -> str:
        for part in (kind, namespace):
            if not part or "/" in part or part.startswith("."):
                raise LocalApiError(422, "Invalid", f"invalid kind or namespace: {part!r}")
        return os.path.join(self.root, namespace, kind.lower())

    def _path(self, kind: str, namespace: str, name: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise LocalApiError(422, "Invalid", f"invalid name: {name!r}")
        return os.path.join(self._kind_dir(kind, namespace), name + ".json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, ".lock"), "a+", encoding="utf-8") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _next_resource_version(self) -> str:
        """Bump the global counter; caller holds the lock."""
        counter_path = os.path.join(self.root, ".resource-version")
        try:
            with open(counter_path, encoding="utf-8") as counter_file:
                current = int(counter_file.read().strip() or "0")
        except FileNotFoundError:
            current = 0
        new = current + 1
        self._atomic_write(counter_path, str(new))
        return str(new)

    @staticmethod
    def _atomic_write(path: str, text: str) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as tmp_file:
                tmp_file.write(text)
                tmp_file.flush()
                os.fsync(tmp_file.fileno())
            # Readers in other processes (the pod runtime runs as root, modules may not) must see it.
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

    def _write(self, path: str, obj: dict) -> dict:
        obj["metadata"]["resourceVersion"] = self._next_resource_version()
        self._atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
        return copy.deepcopy(obj)

    @staticmethod
    def _identity(obj: dict) -> tuple[str, str, str]:
        if not isinstance(obj, dict):
            raise LocalApiError(422, "Invalid", "object must be a mapping")
        metadata = obj.get("metadata") or {}
        kind, namespace, name = obj.get("kind"), metadata.get("namespace"), metadata.get("name")
        if not kind or not namespace or not name:
            raise LocalApiError(422, "Invalid", "object needs kind, metadata.namespace and metadata.name")
        return kind, namespace, name

    # -- the API -----------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self._read(self._path(kind, namespace, name))

    def list(self, kind: str, namespace: str, label_selector: dict[str, str] | None = None) -> list[dict]:
        directory = self._kind_dir(kind, namespace)
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

    def namespaces(self) -> list[str]:
        """Namespaces holding at least one object (the store has no Namespace objects of its own)."""
        try:
            return sorted(entry for entry in os.listdir(self.root) if not entry.startswith(".") and os.path.isdir(os.path.join(self.root, entry)))
        except FileNotFoundError:
            return []

    def create(self, obj: dict) -> dict:
        kind, namespace, name = self._identity(obj)
        path = self._path(kind, namespace, name)
        with self._locked():
            if os.path.exists(path):
                raise LocalApiError(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')
            new = copy.deepcopy(obj)
            metadata = new["metadata"]
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = _now_rfc3339()
            metadata.pop("resourceVersion", None)
            return self._write(path, new)

    def replace(self, obj: dict) -> dict:
        kind, namespace, name = self._identity(obj)
        path = self._path(kind, namespace, name)
        with self._locked():
            stored = self._read(path)
            if stored is None:
                raise LocalApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            wanted_version = obj["metadata"].get("resourceVersion")
            if wanted_version != stored["metadata"].get("resourceVersion"):
                raise LocalApiError(
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
            return self._write(path, new)

    def patch_merge(self, kind: str, namespace: str, name: str, patch: dict) -> dict:
        path = self._path(kind, namespace, name)
        with self._locked():
            stored = self._read(path)
            if stored is None:
                raise LocalApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            # As on the API server, a resourceVersion inside the patch is a precondition.
            wanted_version = ((patch or {}).get("metadata") or {}).get("resourceVersion")
            if wanted_version is not None and wanted_version != stored["metadata"].get("resourceVersion"):
                raise LocalApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.lower()}s "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            patched = merge_patch(stored, patch)
            if not isinstance(patched, dict) or patched.get("kind") != stored.get("kind") or (patched.get("metadata") or {}).get("name") != name:
                raise LocalApiError(422, "Invalid", "a patch cannot change kind or metadata.name")
            for field in ("uid", "creationTimestamp", "namespace"):
                if field in stored["metadata"]:
                    patched["metadata"][field] = stored["metadata"][field]
            return self._write(path, patched)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        path = self._path(kind, namespace, name)
        with self._locked():
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise LocalApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found') from None
