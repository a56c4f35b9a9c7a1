"""One settings object, read from the environment (prefix `KHQRPAY_`) and an optional `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite:///{Path('data').resolve() / 'khqrpay.sqlite3'}"


class Settings(BaseSettings):
    """Every figure a deployment may change; the schedule's figures are in seconds."""

    model_config = SettingsConfigDict(
        env_prefix="KHQRPAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(default_factory=_default_database_url)

    # Bakong Open API
    bakong_url: str = "https://api-bakong.nbc.gov.kh"
    bakong_token: SecretStr = SecretStr("")
    bakong_timeout_s: float = Field(default=15.0, gt=0)
    bakong_user_agent: str = "khqrpay/0.1 (+https://github.com/khqrpay)"
    bakong_rate_limit_per_s: float = Field(default=20.0, gt=0)
    bakong_max_retries: int = Field(default=3, ge=0)
    bakong_breaker_failures: int = Field(default=5, ge=1)
    bakong_breaker_reset_s: float = Field(default=30.0, gt=0)
    bakong_token_warn_days: float = Field(default=7.0, ge=0)
    # Retry waits: full jitter up to base * 2^n, capped; a longer Retry-After goes to the caller.
    bakong_backoff_base_s: float = Field(default=0.5, gt=0)
    bakong_backoff_max_s: float = Field(default=10.0, gt=0)
    # After the md5/hash list endpoint answers 403, use single checks this long before retrying it.
    bakong_list_fallback_s: float = Field(default=600.0, gt=0)

    # The receiving merchant
    merchant_account: str = "khqrpay_demo@devb"
    merchant_name: str = "khqrpay demo shop"
    merchant_city: str = "Phnom Penh"
    merchant_id: str | None = None
    acquiring_bank: str | None = None

    # The verification schedule (seconds)
    schedule_initial_delay_s: float = Field(default=5.0, ge=0)
    schedule_fast_interval_s: float = Field(default=2.0, gt=0)
    schedule_fresh_window_s: float = Field(default=15 * 60, ge=0)
    schedule_hot_window_s: float = Field(default=10 * 60, ge=0)
    schedule_age_factor: float = Field(default=0.1, gt=0)
    schedule_max_interval_s: float = Field(default=30 * 60, gt=0)
    payment_window_s: float = Field(default=30 * 24 * 3600, gt=0)
    # The final check waits this long after the window end: Bakong settles a payment made in the
    # window's last seconds a little later.
    schedule_final_grace_s: float = Field(default=60.0, ge=0)
    # A Bakong call made anyway carries payments whose next check is this share of their interval
    # away (md5 list, up to 50 a call).
    schedule_early_fraction: float = Field(default=0.5, ge=0, lt=1)
    # Its free places then go to ride-alongs: pending payments last checked at least this long
    # ago, the longest ago first; a ride-along leaves the payment's schedule as it is.
    schedule_ride_along_after_s: float = Field(default=60.0, gt=0)
    schedule_error_backoff_max_s: float = Field(default=60.0, gt=0)

    # The worker
    worker_batch_size: int = Field(default=200, ge=1)
    worker_lease_s: float = Field(default=60.0, gt=0)
    worker_poll_interval_s: float = Field(default=0.5, gt=0)
    # After Bakong refuses the token, no call is made for this long (then one cycle probes again).
    worker_unauthorized_pause_s: float = Field(default=300.0, gt=0)
    # On SIGTERM a Bakong call in flight gets this long to answer before its batch is released.
    worker_shutdown_grace_s: float = Field(default=5.0, ge=0)
    # How often the expiry sweep and the pending-payments gauge run.
    worker_sweep_interval_s: float = Field(default=60.0, gt=0)
    worker_metrics_host: str = "127.0.0.1"
    attempts_kept_per_payment: int = Field(default=20, ge=1)


def load_settings() -> Settings:
    return Settings()
