"""Settings from the environment and `.env`; a bad value stops start-up naming its key."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trial.protocol import bundled_path

ENV_PREFIX = "ENGAGE_"


class Settings(BaseSettings):
    """Every configuration key of Engage (see `.env.example`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///engage.db"
    protocol: Path = Field(default_factory=bundled_path)
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: SecretStr | None = None
    # /healthz fails (503, "telegram") when no getUpdates has completed for this long.
    telegram_stale_seconds: float = Field(default=60.0, gt=0)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    # WeCom (企业微信) for staff: a self-built app of the hospital's corp (see README, going
    # live); on when all five of corp id, agent id, secret, token and AES key are set.
    wecom_corp_id: str | None = None
    wecom_agent_id: int | None = Field(default=None, ge=1)
    wecom_secret: SecretStr | None = None
    wecom_token: SecretStr | None = None  # the callback's Token
    wecom_aes_key: SecretStr | None = None  # the callback's EncodingAESKey (43 characters)
    wecom_api_url: str = "https://qyapi.weixin.qq.com"
    # WeChat Official Account (服务号) for patients (see README, going live): on when the app
    # id, app secret and server token are set; the EncodingAESKey switches to safe (AES) mode.
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None
    wechat_token: SecretStr | None = None
    wechat_aes_key: SecretStr | None = None
    wechat_api_url: str = "https://api.weixin.qq.com"
    # TOML: the template message (id and fields) of each catalogue message (see
    # bot/channels/wechat/templates.py); without it only free-form replies can go.
    wechat_templates: Path | None = None
    public_url: str = "http://127.0.0.1:8080"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    # Sending pace, messages per second: SMS per sender (a long code takes 1/s; a short code,
    # toll-free number or Messaging Service far more), Telegram for the whole bot (its limit
    # is 30/s).
    sms_rate: float = Field(default=1.0, gt=0, le=1000)
    telegram_rate: float = Field(default=29.0, gt=0, le=1000)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        if not (url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://"))):
            raise ValueError("must be sqlite+aiosqlite://... or postgresql+asyncpg://...")
        return url

    @field_validator("telegram_api_url", "twilio_api_url", "wecom_api_url", "wechat_api_url",
                     "public_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")

    @field_validator("protocol")
    @classmethod
    def _protocol_exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"no protocol file at {path}")
        return path

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_token_alphabet(cls, secret: SecretStr | None) -> SecretStr | None:
        # Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and -.
        if secret is not None:
            value = secret.get_secret_value()
            ok = 0 < len(value) <= 256 and all(c.isascii() and (c.isalnum() or c in "_-")
                                                for c in value)
            if not ok:
                raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return secret

    @field_validator("wecom_aes_key", "wechat_aes_key")
    @classmethod
    def _encoding_aes_key(cls, key: SecretStr | None) -> SecretStr | None:
        # The EncodingAESKey of a WeCom app or an Official Account: 43 base64 characters,
        # 32 bytes once "=" is added.
        if key is not None:
            value = key.get_secret_value()
            try:
                ok = len(value) == 43 and len(base64.b64decode(value + "=", validate=True)) == 32
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("must be the 43-character EncodingAESKey")
        return key

    @field_validator("wechat_templates")
    @classmethod
    def _templates_exist(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no template file at {path}")
        return path

    @model_validator(mode="after")
    def _complete_channels(self) -> Settings:
        wechat = {"wechat_app_id": self.wechat_app_id,
                  "wechat_app_secret": self.wechat_app_secret,
                  "wechat_token": self.wechat_token}
        if any(v is not None for v in wechat.values()):
            missing = [k for k, v in wechat.items() if v is None]
            if missing:
                raise ValueError(f"{missing[0]}: required with the other ENGAGE_WECHAT_ settings "
                                 "(app id, app secret, token)")
        wecom = {"wecom_corp_id": self.wecom_corp_id, "wecom_agent_id": self.wecom_agent_id,
                 "wecom_secret": self.wecom_secret, "wecom_token": self.wecom_token,
                 "wecom_aes_key": self.wecom_aes_key}
        if any(v is not None for v in wecom.values()):
            missing = [k for k, v in wecom.items() if v is None]
            if missing:
                raise ValueError(f"{missing[0]}: required with the other ENGAGE_WECOM_ settings "
                                 "(corp id, agent id, secret, token, AES key)")
        if self.telegram_mode == "webhook" and self.telegram_webhook_secret is None:
            raise ValueError("telegram_webhook_secret: required when ENGAGE_TELEGRAM_MODE=webhook")
        if self.twilio_account_sid and not self.twilio_auth_token:
            raise ValueError("twilio_auth_token: required when ENGAGE_TWILIO_ACCOUNT_SID is set")
        if self.twilio_account_sid and not (self.twilio_from or self.twilio_messaging_service_sid):
            raise ValueError(
                "twilio_from: ENGAGE_TWILIO_FROM or ENGAGE_TWILIO_MESSAGING_SERVICE_SID "
                "is required"
            )
        return self

    @property
    def telegram_enabled(self) -> bool:
        """Telegram runs only with a token."""
        return self.telegram_token is not None

    @property
    def wecom_enabled(self) -> bool:
        """WeCom runs only with the app's corp id, agent id, secret, token and AES key."""
        return None not in (self.wecom_corp_id, self.wecom_agent_id, self.wecom_secret,
                            self.wecom_token, self.wecom_aes_key)

    @property
    def wechat_enabled(self) -> bool:
        """WeChat runs only with the account's app id, app secret and server token."""
        return None not in (self.wechat_app_id, self.wechat_app_secret, self.wechat_token)

    @property
    def sms_enabled(self) -> bool:
        """SMS runs only with Twilio credentials."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)


class ConfigError(Exception):
    """A setting that stops start-up; the message is one line naming the key."""


def describe(exc: ValidationError) -> str:
    """One line naming each bad key as the operator writes it (ENGAGE_...)."""
    parts = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            key = str(error["loc"][0])
        else:
            key, _, message = message.partition(": ")
        parts.append(f"{ENV_PREFIX}{key.upper()}: {message}")
    return "configuration error: " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise ConfigError with one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
