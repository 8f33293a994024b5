"""Stripe-shaped API errors: raised anywhere in a handler, turned into `{"error": {...}}` by the app."""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://stripe.com/docs/error-codes"

# Stripe's `type` for each status when a rule or handler does not say otherwise.
DEFAULT_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "card_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    429: "invalid_request_error",
}


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,  # noqa: A002 - Stripe's field name
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or DEFAULT_TYPE_BY_STATUS.get(status, "api_error")
        self.code = code
        self.param = param
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"{DOC_BASE}#{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        if request_id:
            err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        err.update(self.extra)
        return {"error": err}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def missing_param(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def unknown_param(param: str) -> StripeError:
    return StripeError(400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param)


def no_such(kind: str, obj_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)


def state_error(message: str, *, param: str | None = None) -> StripeError:
    # Stripe answers operations that do not fit the object's state with 400 invalid_request_error.
    return StripeError(400, message, param=param)


def card_declined(message: str = "Your card was declined.") -> StripeError:
    return StripeError(402, message, type="card_error", code="card_declined", extra={"decline_code": "generic_decline"})


def rate_limited(retry_after: float | None = None) -> StripeError:
    headers = {"Retry-After": str(int(retry_after) if retry_after and retry_after == int(retry_after) else retry_after)}
    return StripeError(
        429,
        "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        code="rate_limit",
        headers=headers if retry_after is not None else {},
    )


def api_error(status: int = 500) -> StripeError:
    return StripeError(status, "An unknown error occurred. Please retry the request.", type="api_error")
