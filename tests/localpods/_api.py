"""The runtime's object store, under the name the runtime and its command line import it by."""

from __future__ import annotations

from tests.localpods.api.store import LocalApiError, LocalApiStore

__all__ = ["LocalApiError", "LocalApiStore"]
