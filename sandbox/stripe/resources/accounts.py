"""The sandbox's own Stripe account: `/v1/account`, `/v1/accounts/{id}` and the `Stripe-Account` check.

The sandbox is one platform account with no connected accounts, so `Stripe-Account` may only name
the sandbox's own account; anything else gets Stripe's 403 `account_invalid`. The account's default
API version (the version events render in) is a sandbox setting: `POST /_sandbox/account`.
"""

from __future__ import annotations

from typing import Any

from ..core import Sandbox
from ..errors import StripeError
from ..router import Req, route
from ..store import Obj

ACCOUNT_ID = "acct_1SandboxRevOps00"
# A fixed creation time: the account predates every object the sandbox makes.
CREATED = 1_577_836_800  # 2020-01-01


def _masked(api_key: str) -> str:
    return api_key[:8] + "*" * max(0, len(api_key) - 12) + api_key[-4:] if len(api_key) > 12 else api_key


def no_access(account_id: str, api_key: str) -> StripeError:
    return StripeError(
        403,
        f"The provided key '{_masked(api_key)}' does not have access to account '{account_id}' (or that account "
        "does not exist). Application access may have been revoked.",
        code="account_invalid",
    )


def check_access(sb: Sandbox, account_id: str, api_key: str) -> None:
    """`Stripe-Account` names the account a request acts on: only the sandbox's own one exists."""
    if account_id.strip() != ACCOUNT_ID:
        raise no_access(account_id, api_key)


def account(sb: Sandbox) -> Obj:
    # Stripe's Account object shows no API version; the default version is read and set through
    # the sandbox control `/_sandbox/account` instead.
    return {
        "id": ACCOUNT_ID,
        "object": "account",
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": "5734",
            "minority_owned_business_designation": None,
            "monthly_estimated_revenue": None,
            "name": "RevOps Sandbox",
            "product_description": None,
            "specified_commercial_transactions_act_url": None,
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": "company",
        # Only requested capabilities are listed, as on Stripe.
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        # The platform's own account has no controller, company or person details to show.
        "company": None,
        "controller": None,
        "country": "US",
        "created": CREATED,
        "default_currency": "usd",
        "details_submitted": True,
        "email": "sandbox@example.com",
        "external_accounts": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/accounts/{ACCOUNT_ID}/external_accounts",
        },
        "future_requirements": None,
        "groups": None,
        "individual": None,
        "metadata": {},
        "payouts_enabled": True,
        "requirements": None,
        "settings": None,
        "tos_acceptance": None,
        "type": "standard",
    }


@route("GET", "/v1/account", "AccountRetrieveCurrentParams")
def retrieve_current(sb: Sandbox, req: Req) -> tuple[int, Obj]:
    return 200, account(sb)


@route("GET", "/v1/accounts/<id>", "AccountRetrieveParams")
def retrieve(sb: Sandbox, req: Req, id: str) -> tuple[int, Obj]:  # noqa: A002
    if id != ACCOUNT_ID:
        api_key: Any = getattr(sb.ctx, "api_key", "") or ""
        raise no_access(id, str(api_key))
    return 200, account(sb)
