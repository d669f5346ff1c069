# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client that writes continuously and remembers every commit the server acknowledged.

It connects the way an application that follows the primary would: one conninfo naming every
member, ``target_session_attrs=read-write``, so libpq picks whoever is primary now. Each insert is
its own transaction (autocommit) carrying a sequence number; the number is recorded as
acknowledged only when the COMMIT returned success, i.e. after synchronous replication confirmed
it. Any error (server shut down, connection lost, read-only server) means "not acknowledged", and
the writer reconnects at once and goes on with the next number.

``missing()`` then asks the primary which acknowledged numbers are not in the table: with a
correct switchover or failover the answer is always empty.

Used by the integration tests and by ``hack/bench/switchover.py``; it only talks to the pods'
loopback addresses.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import threading
import time

import psycopg

TABLE = "dbonk8s_writer"


def cluster_conninfo(runtime_dir: str, namespace: str = "postgres", name: str = "postgres", **extra: str) -> str:
    """Conninfo naming every member of a local pod runtime cluster, with the superuser's password."""
    api = os.path.join(runtime_dir, "api", namespace)
    with open(os.path.join(api, "secret", f"{name}-credentials.json"), encoding="utf-8") as secret_file:
        secret = json.load(secret_file)
    if "data" in secret:
        password = base64.b64decode(secret["data"]["superuser-password"]).decode()
    else:
        password = secret["stringData"]["superuser-password"]
    hosts = []
    for entry in sorted(os.listdir(os.path.join(api, "pod"))):
        with open(os.path.join(api, "pod", entry), encoding="utf-8") as pod_file:
            pod = json.load(pod_file)
        ip = (pod.get("status") or {}).get("podIP")
        if ip and pod["metadata"]["name"].startswith(name + "-"):
            hosts.append(ip)
    if not hosts:
        raise RuntimeError(f"no pod addresses in {api}")
    params = {
        "host": ",".join(hosts),
        "port": ",".join(["5432"] * len(hosts)),
        "user": "postgres",
        "password": password,
        "dbname": "postgres",
        "target_session_attrs": "read-write",
        "connect_timeout": "2",
        "application_name": "dbonk8s-writer",
        **extra,
    }
    return " ".join(f"{key}='{value}'" for key, value in params.items())


@dataclasses.dataclass
class Ack:
    seq: int
    at: float  # time.monotonic() when the commit returned


class Writer:
    """Writes in a background thread until ``stop()``."""

    def __init__(self, conninfo: str, interval: float = 0.005) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.acks: list[Ack] = []
        self.errors: list[tuple[float, str]] = []
        self.attempted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def setup(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
            row = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}").fetchone()
        self._next = int(row[0]) + 1 if row else 1

    def start(self) -> "Writer":
        self.setup()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()
        # Do not return before the first acknowledgement: the measurements need a baseline.
        deadline = time.monotonic() + 60
        while not self.acks and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        if not self.acks:
            raise RuntimeError(f"the writer got no acknowledgement: {self.errors[-1:]}")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> "Writer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            if conn is None:
                try:
                    conn = psycopg.connect(self.conninfo, autocommit=True)
                except psycopg.Error as exc:
                    self._error(exc)
                    time.sleep(0.02)
                    continue
            seq = self._next
            self._next += 1
            self.attempted += 1
            try:
                conn.execute(f"INSERT INTO {TABLE} (seq) VALUES (%s)", (seq,))
            except psycopg.Error as exc:
                self._error(exc)
                try:
                    conn.close()
                except psycopg.Error:
                    pass
                conn = None
                continue
            with self._lock:
                self.acks.append(Ack(seq, time.monotonic()))
            if self.interval:
                time.sleep(self.interval)
        if conn is not None:
            conn.close()

    def _error(self, exc: Exception) -> None:
        with self._lock:
            self.errors.append((time.monotonic(), str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))

    # -- measurements --------------------------------------------------------------------------

    def acked_since(self, since: float) -> int:
        with self._lock:
            return sum(1 for ack in self.acks if ack.at >= since)

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time without an acknowledgement within [start, end], in seconds."""
        with self._lock:
            times = [start] + [ack.at for ack in self.acks if start <= ack.at <= end] + [end]
        return max(later - earlier for earlier, later in zip(times, times[1:]))

    def wait_acks_after(self, moment: float, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acked_since(moment) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"no acknowledged write within {timeout}s; last errors: {self.errors[-3:]}")

    def missing(self) -> list[int]:
        """Acknowledged sequence numbers that the current primary does not have."""
        with self._lock:
            acked = [ack.seq for ack in self.acks]
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            present = {row[0] for row in conn.execute(f"SELECT seq FROM {TABLE} WHERE seq = ANY(%s)", (acked,))}
        return sorted(set(acked) - present)
