# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json
import multiprocessing
import os

import pytest
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._local_api import LocalApiError, LocalApiStore, merge_patch


def pod(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "postgres", "labels": labels or {}}}


@pytest.fixture
def store(tmp_path) -> LocalApiStore:
    return LocalApiStore(str(tmp_path / "api"))


def test_create_sets_server_fields_and_stores_file(store, tmp_path):
    created = store.create(pod("postgres-0", {"app": "postgres"}))
    metadata = created["metadata"]
    assert metadata["resourceVersion"] == "1"
    assert metadata["uid"] and metadata["creationTimestamp"].endswith("Z")
    with open(tmp_path / "api" / "postgres" / "pod" / "postgres-0.json", encoding="utf-8") as stored:
        assert json.load(stored) == created
    assert (tmp_path / "api" / ".resource-version").read_text() == "1"


def test_create_twice_is_already_exists(store):
    store.create(pod("postgres-0"))
    with pytest.raises(LocalApiError) as error:
        store.create(pod("postgres-0"))
    assert (error.value.status, error.value.reason) == (409, "AlreadyExists")


def test_get_absent_is_none_and_list_filters_by_labels(store):
    assert store.get("Pod", "postgres", "postgres-9") is None
    store.create(pod("postgres-1", {"app": "postgres", "dbonk8s.io/role": "replica"}))
    store.create(pod("postgres-0", {"app": "postgres"}))
    store.create(pod("other-0", {"app": "other"}))
    assert [p["metadata"]["name"] for p in store.list("Pod", "postgres")] == ["other-0", "postgres-0", "postgres-1"]
    assert [p["metadata"]["name"] for p in store.list("Pod", "postgres", {"app": "postgres"})] == ["postgres-0", "postgres-1"]
    assert [p["metadata"]["name"] for p in store.list("Pod", "postgres", {"dbonk8s.io/role": "replica"})] == ["postgres-1"]
    assert store.list("Pod", "elsewhere") == []
    assert store.namespaces() == ["postgres"]


def test_replace_needs_the_current_resource_version(store):
    created = store.create({"kind": "ConfigMap", "metadata": {"name": "postgres-primary", "namespace": "postgres"}, "data": {"primary": "postgres-0"}})
    first = dict(created, data={"primary": "postgres-1"})
    replaced = store.replace(first)
    assert replaced["data"] == {"primary": "postgres-1"}
    assert int(replaced["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    stale = dict(created, data={"primary": "postgres-2"})
    with pytest.raises(LocalApiError) as error:
        store.replace(stale)
    assert (error.value.status, error.value.reason) == (409, "Conflict")
    assert store.get("ConfigMap", "postgres", "postgres-primary")["data"] == {"primary": "postgres-1"}


def test_replace_absent_is_not_found(store):
    with pytest.raises(LocalApiError) as error:
        store.replace({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "postgres", "resourceVersion": "1"}})
    assert error.value.status == 404


def test_patch_merge_keeps_other_fields_and_removes_nulls(store):
    store.create(pod("postgres-0", {"app": "postgres", "dbonk8s.io/role": "replica"}))
    store.patch_merge("Pod", "postgres", "postgres-0", {"status": {"phase": "Running", "podIP": "127.0.0.10"}})
    patched = store.patch_merge("Pod", "postgres", "postgres-0", {"metadata": {"labels": {"dbonk8s.io/role": None, "x": "y"}}})
    assert patched["metadata"]["labels"] == {"app": "postgres", "x": "y"}
    assert patched["status"] == {"phase": "Running", "podIP": "127.0.0.10"}
    assert patched["metadata"]["resourceVersion"] == "3"


def test_patch_with_stale_resource_version_conflicts(store):
    created = store.create(pod("postgres-0"))
    store.patch_merge("Pod", "postgres", "postgres-0", {"status": {"phase": "Running"}})
    with pytest.raises(LocalApiError) as error:
        store.patch_merge("Pod", "postgres", "postgres-0", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"a": "b"}}})
    assert error.value.reason == "Conflict"


def test_patch_cannot_rename(store):
    store.create(pod("postgres-0"))
    with pytest.raises(LocalApiError) as error:
        store.patch_merge("Pod", "postgres", "postgres-0", {"metadata": {"name": "postgres-1"}})
    assert error.value.status == 422


def test_delete_and_delete_again(store):
    store.create(pod("postgres-0"))
    store.delete("Pod", "postgres", "postgres-0")
    assert store.get("Pod", "postgres", "postgres-0") is None
    with pytest.raises(LocalApiError) as error:
        store.delete("Pod", "postgres", "postgres-0")
    assert (error.value.status, error.value.reason) == (404, "NotFound")


def test_names_cannot_escape_the_root(store):
    with pytest.raises(LocalApiError):
        store.get("Pod", "postgres", "../../etc/passwd")
    with pytest.raises(LocalApiError):
        store.get("Pod", "..", "x")


def test_merge_patch_rfc7386_examples():
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch(["a"], {"a": "b"}) == {"a": "b"}


def _bump_labels(root: str, worker: int) -> None:
    store = LocalApiStore(root)
    for index in range(25):
        store.patch_merge("Pod", "postgres", "postgres-0", {"metadata": {"labels": {f"w{worker}-{index}": "x"}}})


def test_concurrent_writers_from_processes_lose_nothing(store):
    store.create(pod("postgres-0"))
    workers = [multiprocessing.Process(target=_bump_labels, args=(store.root, worker)) for worker in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    final = store.get("Pod", "postgres", "postgres-0")
    assert len(final["metadata"]["labels"]) == 100
    assert final["metadata"]["resourceVersion"] == "101"
    assert not [name for name in os.listdir(os.path.join(store.root, "postgres", "pod")) if name.startswith(".tmp-")]
