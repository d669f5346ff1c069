"""Loads the collection's LocalApiStore whether or not the collection is on sys.path."""

from __future__ import annotations

import importlib.util
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load():
    try:
        from ansible_collections.dbonk8s.postgresql.plugins.module_utils import _local_api  # type: ignore

        return _local_api
    except ImportError:
        path = os.path.join(REPO_ROOT, "plugins", "module_utils", "_local_api.py")
        spec = importlib.util.spec_from_file_location("_dbonk8s_local_api", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


_local_api = _load()
LocalApiStore = _local_api.LocalApiStore
LocalApiError = _local_api.LocalApiError
