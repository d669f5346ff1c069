"""API errors with the shapes of the real kube-apiserver: an HTTP status, a reason and a v1 Status body."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API server answers with ``status`` and a ``v1.Status`` body (``reason`` as in metav1.StatusReason)."""

    def __init__(self, status: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.status,
        }
        # The real server sends "details": {} for some errors and no key for others.
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found', {"name": name, "group": group, "kind": resource})


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(409, "AlreadyExists", f'{qualified} "{name}" already exists', {"name": name, "group": group, "kind": resource})


def conflict(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; please apply your changes to the latest version and try again',
        {"name": name, "group": group, "kind": resource},
    )


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> ApiError:
    """422 Invalid, with one cause per field (``{"field": ..., "message": ..., "reason": "FieldValueInvalid"}``)."""
    summary = "; ".join(f"{cause['field']}: {cause['message']}" for cause in causes) if causes else "invalid object"
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {summary}',
        {"name": name, "group": group, "kind": kind, "causes": [{"reason": "FieldValueInvalid", **cause} for cause in causes]},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
