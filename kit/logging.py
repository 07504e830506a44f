"""structlog setup: console in development, JSON with LOG_FORMAT=json, stdlib routed through."""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

import structlog

from kit.settings import Settings

# Keys whose values are personal data or secrets, wherever they appear in an event.
SENSITIVE_KEYS = frozenset(
    {
        "email",
        "phone",
        "name",
        "address",
        "line1",
        "line2",
        "postal_code",
        "shipping_address",
        "billing_address",
        "ship_to",
        "token",
        "payment_token",
        "access_token",
        "authorization",
        "password",
        "secret",
        "card",
    }
)
REDACTED = "[redacted]"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_BEARER = re.compile(r"(?i)bearer\s+[\w.-]+")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        # Most values hold neither an "@" nor a "bearer": no pattern is run on them (two
        # substitutions per string value were a fifth of an event's CPU).
        if "@" in value:
            value = _EMAIL.sub(REDACTED, value)
        if "bearer" in value.lower():
            value = _BEARER.sub(f"Bearer {REDACTED}", value)
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_personal_data(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Replace personal data and secrets (by key; e-mail addresses anywhere) before rendering."""
    return {
        key: REDACTED if key.lower() in SENSITIVE_KEYS else _scrub(value)
        for key, value in event_dict.items()
    }


_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
    redact_personal_data,
]

# Libraries whose own handlers would bypass ours; they propagate to the root instead.
_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio", "alembic", "nats")


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library through one renderer on stderr."""
    renderer: structlog.types.Processor
    if settings.log.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)

    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    formatter: dict[str, Any] = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": _SHARED_PROCESSORS,
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"structlog": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "structlog",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["stderr"], "level": settings.log.level},
            "loggers": {name: {"handlers": [], "propagate": True} for name in _ROUTED_LOGGERS},
        }
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named after its module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
