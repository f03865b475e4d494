"""The channel part of the engine's settings (``JOURNEY_*``), mixed into ``engine.settings``.

Providers (a channel whose provider is unset delivers to the local sink):

- email: ``JOURNEY_EMAIL_PROVIDER=smtp``, ``JOURNEY_SMTP_URL``, ``JOURNEY_EMAIL_FROM``
- SMS: ``JOURNEY_SMS_PROVIDER=aliyun|twilio``; ``JOURNEY_ALIYUN_ACCESS_KEY_ID``,
  ``JOURNEY_ALIYUN_ACCESS_KEY_SECRET``, ``JOURNEY_ALIYUN_SMS_SIGN_NAME``,
  ``JOURNEY_ALIYUN_SMS_ENDPOINT``; ``JOURNEY_TWILIO_ACCOUNT_SID``,
  ``JOURNEY_TWILIO_AUTH_TOKEN``, ``JOURNEY_TWILIO_FROM``, ``JOURNEY_TWILIO_BASE_URL``
- WeCom: ``JOURNEY_WECOM_PROVIDER=app|robot``, ``JOURNEY_WECOM_CORP_ID``,
  ``JOURNEY_WECOM_SECRET``, ``JOURNEY_WECOM_AGENT_ID``, ``JOURNEY_WECOM_ROBOT_URL``,
  ``JOURNEY_WECOM_BASE_URL``
- push: ``JOURNEY_PUSH_PROVIDER=fcm``, ``JOURNEY_FCM_SERVICE_ACCOUNT`` (the JSON key file,
  or its content), ``JOURNEY_FCM_BASE_URL``

Delivery:

- ``JOURNEY_REDIS_URL``: where rate limits and circuit breakers are shared by every worker
  (unset: kept in the process, which is right for ``journey run`` alone).
- ``JOURNEY_SEND_TIMEOUT``: seconds a provider call may take (default 10); the dispatcher
  also stops waiting for a call after this long (plus a rate limit's wait) and counts it as
  a transient failure.
- ``JOURNEY_SMS_RATE_LIMIT``, ``JOURNEY_EMAIL_RATE_LIMIT``, ``JOURNEY_WECOM_RATE_LIMIT``,
  ``JOURNEY_PUSH_RATE_LIMIT``: messages per provider account, ``10`` (per second), ``30/min``,
  or several comma-separated (unset: no limit of ours; the WeCom robot defaults to its
  documented 20/min).
- ``JOURNEY_WECOM_MEMBER_RATE_LIMIT``: app messages per member (default ``30/min,1000/h``,
  WeCom's own limits, beyond which it silently drops messages).
- ``JOURNEY_BREAKER_THRESHOLD``: consecutive transient failures that open a provider's
  circuit (default 5); ``JOURNEY_BREAKER_COOLDOWN``: seconds it stays open before one trial
  call (default 30; a credential error holds it ten times as long).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.channels.rates import parse_rates
from engine.errors import ConfigurationError

T = TypeVar("T")

DEFAULT_WECOM_MEMBER_RATE = "30/min,1000/h"


class ChannelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEY_", extra="ignore")

    email_provider: str | None = None
    smtp_url: SecretStr | None = None
    email_from: str | None = None

    sms_provider: str | None = None
    aliyun_access_key_id: str | None = None
    aliyun_access_key_secret: SecretStr | None = None
    aliyun_sms_sign_name: str | None = None
    aliyun_sms_endpoint: str = "https://dysmsapi.aliyuncs.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"

    wecom_provider: str | None = None
    wecom_corp_id: str | None = None
    wecom_secret: SecretStr | None = None
    wecom_agent_id: int | None = None
    wecom_robot_url: SecretStr | None = None
    wecom_base_url: str = "https://qyapi.weixin.qq.com"

    push_provider: str | None = None
    fcm_service_account: SecretStr | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"

    redis_url: str | None = None
    send_timeout: float = Field(default=10.0, gt=0, le=300)  # JOURNEY_SEND_TIMEOUT
    sms_rate_limit: str | None = None
    email_rate_limit: str | None = None
    wecom_rate_limit: str | None = None
    push_rate_limit: str | None = None
    wecom_member_rate_limit: str | None = DEFAULT_WECOM_MEMBER_RATE
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown: float = Field(default=30.0, gt=0)

    @field_validator(
        "email_provider",
        "smtp_url",
        "email_from",
        "sms_provider",
        "aliyun_access_key_id",
        "aliyun_access_key_secret",
        "aliyun_sms_sign_name",
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_from",
        "wecom_provider",
        "wecom_corp_id",
        "wecom_secret",
        "wecom_agent_id",
        "wecom_robot_url",
        "push_provider",
        "fcm_service_account",
        "redis_url",
        "sms_rate_limit",
        "email_rate_limit",
        "wecom_rate_limit",
        "push_rate_limit",
        "wecom_member_rate_limit",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("email_provider", "sms_provider", "wecom_provider", "push_provider")
    @classmethod
    def _provider_name(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @field_validator(
        "sms_rate_limit",
        "email_rate_limit",
        "wecom_rate_limit",
        "push_rate_limit",
        "wecom_member_rate_limit",
    )
    @classmethod
    def _rates(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rates(value)  # raises ValueError, which pydantic reports with the field
        return value

    @field_validator("aliyun_sms_endpoint", "twilio_base_url", "wecom_base_url", "fcm_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        return value if "://" in value else f"https://{value}"


class Required:
    """Collects the settings a chosen provider needs, to report every missing one at once.

    ``need = Required("JOURNEY_SMS_PROVIDER=aliyun")``; ``key = need(settings.x, "JOURNEY_X")``
    for each; then ``need.check()`` raises :class:`ConfigurationError` naming them all.
    """

    def __init__(self, choice: str) -> None:
        self.choice = choice
        self.missing: list[str] = []

    def __call__(self, value: T | None, setting: str) -> T:
        if value is None or value == "":
            self.missing.append(setting)
        return value  # type: ignore[return-value]  # only used once check() has passed

    def check(self) -> None:
        if self.missing:
            raise ConfigurationError(
                self.missing[0], f"{self.choice} also needs {', '.join(self.missing)}"
            )
