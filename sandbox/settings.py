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

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The OpenID provider's development clients (README, "Configuration"): public on purpose, and only
# the sandbox accepts them.
DEV_OIDC_CLIENTS: dict[str, dict[str, object]] = {
    "shopctl": {"secret": "dev-only-shopctl-secret-change-me", "scopes": ["operator"]},
    "shop-frontend": {"secret": "dev-only-shop-frontend-secret-change-me", "scopes": ["customer"]},
}


class OidcClient(BaseModel):
    """A client of the sandbox's OpenID provider: its secret and the scopes it may be granted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: str = Field(min_length=1)
    scopes: list[str] = Field(min_length=1)


class SandboxSettings(BaseSettings):
    """Payment provider and carrier simulators; each field is `SANDBOX_<FIELD>`."""

    model_config = SettingsConfigDict(
        env_prefix="SANDBOX_", env_file=None, extra="ignore", frozen=True
    )

    # Where the provider's webhooks (Stripe events) go: the platform's Stripe endpoint by default
    # (empty: recorded, not sent).
    webhook_url: str = "http://127.0.0.1:8000/v1/webhooks/payments/stripe"
    db_path: Path | None = None  # default: DATA_DIR/sandbox/psp.sqlite
    async_delay_s: float = Field(default=1.0, ge=0)  # tok_async: processing -> capturable
    flaky_hang_s: float = Field(default=15.0, ge=0)  # tok_flaky: how long a "hang" lasts
    webhook_max_attempts: int = Field(default=12, ge=1)
    # Where the carrier's tracker events (EasyPost `tracker.updated`) go and how fast a parcel
    # moves once its label is bought (seconds per status: in_transit, out_for_delivery, delivered).
    carrier_webhook_url: str = "http://127.0.0.1:8000/v1/webhooks/carriers/easypost"
    carrier_step_s: float = Field(default=5.0, gt=0)
    # The OpenID provider at PSP_URL/oidc (sandbox/oidc): its clients (a JSON object of client id
    # -> {secret, scopes}), the audience of its tokens, their lifetime and the default algorithm.
    # Its signing keys live beside the database (oidc-keys.json) so a restart keeps them.
    oidc_clients: dict[str, OidcClient] = Field(
        default_factory=lambda: {
            k: OidcClient.model_validate(v) for k, v in DEV_OIDC_CLIENTS.items()
        }
    )
    oidc_audience: str = "checkout-api"
    oidc_token_ttl_s: int = Field(default=3600, ge=1, le=86_400)
    oidc_signing_alg: Literal["RS256", "ES256"] = "RS256"

    def is_explicit(self, field: str) -> bool:
        """Whether `field` came from the environment rather than its default."""
        return field in self.model_fields_set


@lru_cache(maxsize=1)
def get_sandbox_settings() -> SandboxSettings:
    """The sandbox process's settings, read once from the environment."""
    return SandboxSettings()
