"""Settings: environment variables with the QINGFENG_ prefix, optionally a YAML config file.

Precedence: explicit keyword arguments > environment > config file (QINGFENG_CONFIG or
./qingfeng.yaml) > defaults. A bad value stops start-up with a message naming the key.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "QINGFENG_"
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./var/qingfeng.db"

# Values copied from examples that must never reach production.
_PLACEHOLDERS = {"changeme", "change-me", "xxx", "your-token", "your_token", "todo", "secret",
                 "placeholder", "<token>", "token"}


# 公众号 template messages: what we say (logical fields) → the chosen template's keys. The
# default fits the classic layout {{first}} {{keyword1}}…{{keyword3}} {{remark}}; a newer
# template (thing1, time2, …) maps only the fields it has, the rest are not sent.
WECHAT_TEMPLATE_FIELDS = ("heading", "title", "deadline", "count", "remark")
DEFAULT_WECHAT_TEMPLATE_FIELDS = {"heading": "first", "title": "keyword1", "deadline": "keyword2",
                                  "count": "keyword3", "remark": "remark"}
_TEMPLATE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")


def _template_fields(value: Any) -> dict[str, str]:
    """JSON ({"title": "thing1", …}) or short form (title=thing1,deadline=time2)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:  # QINGFENG_WECHAT_TEMPLATE_FIELDS= left empty: the classic layout
            return dict(DEFAULT_WECHAT_TEMPLATE_FIELDS)
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("不是合法的 JSON") from None
        else:
            pairs = [p.split("=", 1) for p in re.split(r"[,，;\s]+", text) if p]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("格式应为 title=keyword1,deadline=keyword2,… 或 JSON 对象")
            value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict) or not value:
        raise ValueError("应为非空的字段对应关系，如 title=thing1,deadline=time2,count=thing3")
    unknown = [k for k in value if k not in WECHAT_TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(f"未知字段 {'、'.join(map(str, unknown))}；可用：{'、'.join(WECHAT_TEMPLATE_FIELDS)}")
    bad = [str(v) for v in value.values() if not isinstance(v, str) or not _TEMPLATE_KEY.fullmatch(v)]
    if bad:
        raise ValueError(f"模板字段名 {'、'.join(bad)} 无效（应为 keyword1、thing2 之类的英文名）")
    if len(set(value.values())) != len(value):
        raise ValueError("两个字段对应到了同一个模板字段")
    return dict(value)


class ConfigError(Exception):
    """Configuration is unusable; the message names the offending key(s)."""


def _config_file() -> Path | None:
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{ENV_PREFIX}CONFIG：找不到配置文件 {path}")
        return path
    default = Path("qingfeng.yaml")
    return default if default.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # storage
    database_url: str = DEFAULT_SQLITE_URL
    sql_echo: bool = False

    # domain
    timezone: str = "Asia/Shanghai"
    bank_path: Path = Path("question_bank")
    round_items: int = Field(default=5, ge=1, le=30)
    round_days: int = Field(default=7, ge=1, le=60)
    invite_ttl_days: int = Field(default=30, ge=1, le=365)
    case_cooldown_days: int = Field(default=30, ge=0)
    report_min_group: int = Field(default=5, ge=1)
    push_drafts: bool = False

    # HTTP server (webhooks, callbacks, health)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)

    # Telegram
    telegram_token: SecretStr | None = None
    telegram_base_url: str | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_rate_limit: bool = True
    telegram_quiz_polls: bool = False
    telegram_max_rate: float = Field(default=30, gt=0)  # messages/s overall (Telegram's broadcast limit)
    telegram_max_retries: int = Field(default=5, ge=0, le=20)  # per request: 429, 5xx, network errors
    telegram_retry_backoff: float = Field(default=1.0, ge=0, le=60)  # first backoff in seconds, doubling
    telegram_request_timeout: float = Field(default=10, gt=0, le=120)  # seconds per Bot API request

    # WeChat Official Account
    wechat_token: SecretStr | None = None
    wechat_aes_key: SecretStr | None = None
    wechat_appid: str | None = None
    wechat_secret: SecretStr | None = None
    wechat_api_base_url: str | None = None
    wechat_template_id: str | None = None
    wechat_template_fields: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_WECHAT_TEMPLATE_FIELDS))

    # WeCom self-built application
    wecom_corpid: str | None = None
    wecom_secret: SecretStr | None = None
    wecom_agentid: int | None = None
    wecom_token: SecretStr | None = None
    wecom_aes_key: SecretStr | None = None
    wecom_api_base_url: str | None = None

    # scheduled pushes (scheduler/)
    push_grace_hours: float = Field(default=6, ge=0, le=24 * 14)  # a push missed while down is sent this late at most
    push_concurrency: int = Field(default=32, ge=1, le=256)  # members sent to at once
    scheduler_tick_seconds: float = Field(default=30, gt=0, le=3600)  # re-read schedules, resume unfinished pushes
    scheduler_lease_seconds: float = Field(default=90, ge=2, le=3600)  # a silent process is presumed dead after this

    # generic outbound webhook (bot/channels/webhook.py): each push is POSTed as JSON
    webhook_push_url: str | None = None
    webhook_secret: SecretStr | None = None  # signs bodies (X-Qingfeng-Signature) and checks inbound
    webhook_rate: float = Field(default=0, ge=0)  # messages/s, 0 = unlimited
    webhook_timeout: float = Field(default=10, gt=0, le=120)  # seconds per request

    redis_url: str | None = None
    log_level: str = "INFO"
    log_json: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        # Operators write the URL their database documents; we pick the async driver.
        for plain, asyncish in (("postgresql://", "postgresql+asyncpg://"),
                                ("postgres://", "postgresql+asyncpg://"),
                                ("sqlite://", "sqlite+aiosqlite://")):
            if url.startswith(plain):
                return asyncish + url[len(plain):]
        if not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("只支持 SQLite（sqlite://…）或 PostgreSQL（postgresql://…）")
        return url

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"未知时区 {name!r}") from exc
        return name

    @field_validator(
        "telegram_token", "telegram_webhook_secret", "wechat_token", "wechat_aes_key",
        "wechat_secret", "wecom_secret", "wecom_token", "wecom_aes_key", "webhook_secret",
    )
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value().strip()
            if not raw:
                return None
            if raw.lower() in _PLACEHOLDERS or raw.startswith("<"):
                raise ValueError("这是示例占位值，请填写真实的密钥")
        return value

    @field_validator("wechat_template_fields", mode="before")
    @classmethod
    def _template_mapping(cls, value: Any) -> dict[str, str]:
        return _template_fields(value)

    @field_validator("wechat_aes_key", "wecom_aes_key")
    @classmethod
    def _aes_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) != 43:
            raise ValueError("EncodingAESKey 应为 43 个字符")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: Any) -> Settings:
    """Build settings or raise ConfigError naming each bad key as the operator spells it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{key}: {err['msg']}")
        raise ConfigError("配置错误：\n  " + "\n  ".join(lines)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"配置文件无法解析：{exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
