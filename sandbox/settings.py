"""The sandbox's own settings (`SANDBOX_*`), which the platform's processes never carry.

The sandbox stands in for outside systems, so it is configured apart from the platform's
`kit.settings.Settings`. What the two sides share stays the platform's: the sandbox listens on
PSP_URL's port, accepts exactly STRIPE_API_KEY on Stripe's endpoints, signs payment events as
Stripe does with STRIPE_WEBHOOK_SECRET (and STRIPE_WEBHOOK_SECRET_PREVIOUS during a rotation),
accepts exactly EASYPOST_API_KEY on EasyPost's endpoints (`/v2`) and signs tracker events as
EasyPost does with EASYPOST_WEBHOOK_SECRET, keeps its state under DATA_DIR and
logs per LOG_*; `python -m sandbox` reads those through `Settings`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The OpenID provider's development clients (docs/reference/configuration.md): public on
# purpose, and only the sandbox accepts them.
DEV_OIDC_CLIENTS: dict[str, dict[str, object]] = {
    "shopctl": {"secret": "dev-only-shopctl-secret-change-me", "scopes": ["operator"]},
    "shop-frontend": {"secret": "dev-only-shop-frontend-secret-change-me", "scopes": ["customer"]},
}


# A restricted key's permission: `payment_intent_write`, `charge_read`, ...
PERMISSION = re.compile(r"^[a-z]+(?:_[a-z]+)*_(?:read|write)$")


class OidcClient(BaseModel):
    """A client of the sandbox's OpenID provider: its secret and the scopes it may be granted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: str = Field(min_length=1)
    scopes: list[str] = Field(min_length=1)


class SandboxSettings(BaseSettings):
    """Payment provider and carrier simulators; each field is `SANDBOX_<FIELD>`."""

    model_config = SettingsConfigDict(
        env_prefix="SANDBOX_",
        env_file=None,
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    webhook_url: str = "http://127.0.0.1:8000/v1/webhooks/payments/stripe"
    """Where the provider's webhooks (Stripe events) go: the platform's Stripe endpoint by default
    (empty: recorded, not sent)."""
    db_path: Path | None = None
    """The sandbox's SQLite state. Unset: DATA_DIR/sandbox/psp.sqlite."""
    async_delay_s: float = Field(default=1.0, ge=0)
    """`pm_sandbox_async` (`tok_async`): seconds from `processing` to capturable."""
    refund_fail_delay_s: float = Field(default=2.0, ge=0)
    """`pm_card_refundFail`: seconds before a refund goes from pending to failed."""
    dispute_delay_s: float = Field(default=3.0, ge=0)
    """`pm_card_createDispute`: seconds from the capture to the dispute."""
    flaky_hang_s: float = Field(default=15.0, ge=0)
    """`pm_sandbox_flaky` (`tok_flaky`): how long a simulated hang lasts, in seconds."""
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    """How long an idempotency key is kept (Stripe: 24 hours); a retry after that runs again."""
    restricted_keys: dict[str, list[str]] = Field(default_factory=dict)
    """Restricted keys (`rk_test_...`) the sandbox accepts beside STRIPE_API_KEY, each with its
    permissions (`payment_intent_write`, `refund_write`, `charge_read`, ...; write implies read):
    a JSON object of key -> list. A call outside them answers Stripe's 403."""
    tax_fault: Literal["none", "error", "hang"] = "none"
    """Stripe Tax's endpoints: `none` (they work), `error` (500 before any effect) or `hang`
    (answer after tax_hang_s); switched at run time by POST /v1/test_helpers/tax/fault."""
    tax_hang_s: float = Field(default=30.0, ge=0)
    """How long a `hang` tax fault holds each answer (seconds)."""
    webhook_max_attempts: int = Field(default=12, ge=1)
    """Deliveries of one webhook (with backoff) before the sandbox gives up on it."""
    carrier_webhook_url: str = "http://127.0.0.1:8000/v1/webhooks/carriers/easypost"
    """Where the carrier's tracker events (EasyPost `tracker.updated`) go."""
    carrier_step_s: float = Field(default=5.0, gt=0)
    """How fast a parcel moves: seconds per status (in_transit, out_for_delivery, delivered)."""
    carrier_fault: Literal["none", "error", "hang"] = "none"
    """EasyPost's shipment create, buy and refund: `none` (they work), `error` (503 in EasyPost's
    error shape, before any effect) or `hang` (answer after carrier_hang_s); switched at run
    time by POST /v1/test_helpers/carrier/fault."""
    carrier_hang_s: float = Field(default=15.0, ge=0)
    """How long a `hang` carrier fault holds each answer (seconds): past EASYPOST_TIMEOUT_S, the
    platform's client gives up first."""
    oidc_clients: dict[str, OidcClient] = Field(
        default_factory=lambda: {
            k: OidcClient.model_validate(v) for k, v in DEV_OIDC_CLIENTS.items()
        }
    )
    """The clients of the OpenID provider at PSP_URL/oidc: a JSON object of client id ->
    `{secret, scopes}`. The defaults are public on purpose; its signing keys live beside the
    database (oidc-keys.json), so a restart keeps them."""
    oidc_audience: str = "checkout-api"
    """The audience (`aud`) of the tokens the OpenID provider issues."""
    oidc_token_ttl_s: int = Field(default=3600, ge=1, le=86_400)
    """Lifetime of the OpenID provider's tokens, in seconds."""
    oidc_signing_alg: Literal["RS256", "ES256"] = "RS256"
    """The algorithm the OpenID provider signs with unless the token request names one (`alg`)."""

    @field_validator("restricted_keys")
    @classmethod
    def _test_mode_restricted_keys(cls, keys: dict[str, list[str]]) -> dict[str, list[str]]:
        """A sandbox is test mode: its restricted keys are `rk_test_` keys."""
        wrong = [key[:8] for key in keys if not key.startswith("rk_test_")]
        if wrong:
            raise ValueError(f"SANDBOX_RESTRICTED_KEYS takes rk_test_ keys only, got {wrong}")
        odd = sorted({p for granted in keys.values() for p in granted if not PERMISSION.match(p)})
        if odd:
            raise ValueError(f"permissions are <resource>_read or <resource>_write, got {odd}")
        return keys

    def is_explicit(self, field: str) -> bool:
        """Whether `field` came from the environment rather than its default."""
        return field in self.model_fields_set


@lru_cache(maxsize=1)
def get_sandbox_settings() -> SandboxSettings:
    """The sandbox process's settings, read once from the environment."""
    return SandboxSettings()
