"""API errors raised inside the emulator and rendered as ``metav1.Status`` bodies.

Messages, reasons and ``details`` follow the real API server closely, because the
code under test (and tests) read ``ApiException.status`` and sometimes the body.
"""

from __future__ import annotations

from typing import Any

from joulie_testbed.emulator import resources

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """Raised when a request must be answered with a Failure Status."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # reason="" sends no reason at all (the real server's bare 500 from storage).
        self.reason = REASONS.get(code, "Unknown") if reason is None else reason
        self.details = details
        self.headers = headers or {}
        self.list_meta: dict[str, Any] = {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(res: resources.Resource, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return details


def not_found(res: resources.Resource, name: str) -> ApiError:
    return ApiError(404, f'{res.qualified} "{name}" not found', details=_details(res, name))


def already_exists(res: resources.Resource, name: str) -> ApiError:
    return ApiError(
        409,
        f'{res.qualified} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(res, name),
    )


def conflict(
    res: resources.Resource, name: str, why: str | None = None, *, by_kind: bool = False
) -> ApiError:
    """409 Conflict; ``by_kind``: details name the Kind, as a failed delete precondition's do."""
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    details = _details(res, name)
    if by_kind:
        details["kind"] = res.kind
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}',
        details=details,
    )


def expired_continue(fresh_token: str) -> ApiError:
    """410 for a continue token older than the last compaction; like the real server,
    the Status carries a token that continues (inconsistently) at the latest version."""
    err = ApiError(
        410,
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter, or use the continue "
        "token in this response to retrieve the remainder of the results. Continuing with "
        "the provided token results in an inconsistent list - objects that were created, "
        "modified, or deleted between the time the first chunk was returned and now may "
        "show up in the list.",
        reason="Expired",
    )
    err.list_meta = {"continue": fresh_token}
    return err


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(
    res: resources.Resource, name: str, causes: list[dict[str, str]], *, kind: str | None = None
) -> ApiError:
    """422 listing every cause, worded like field.ErrorList.ToAggregate().

    ``details.kind`` is the Kind (``kind`` overrides it: the real server names the
    plural for a custom resource's missing resourceVersion); no ``name`` when empty.
    """
    texts = [f"{c['field']}: {c['message']}" for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict[str, Any] = {"kind": kind or res.kind, "causes": causes}
    if name:
        details["name"] = name
    if res.group:
        details["group"] = res.group
    return ApiError(422, f'{res.qualified_kind} "{name}" is invalid: {joined}', details=details)


def invalid_options(kind: str, field: str, reason: str, message: str) -> ApiError:
    """422 for a bad query option (dryRun, fieldValidation, fieldManager), as the real
    server reports it: against ``meta.k8s.io`` CreateOptions/UpdateOptions/PatchOptions."""
    return ApiError(
        422,
        f'{kind}.meta.k8s.io "" is invalid: {field}: {message}',
        details={"group": "meta.k8s.io", "kind": kind, "causes": [cause(reason, field, message)]},
    )


def cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}
