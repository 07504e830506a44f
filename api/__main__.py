"""`python -m api`: serve the HTTP API on API_HOST:API_PORT."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from kit.logging import configure_logging
from kit.settings import get_settings


def main() -> None:
    """Run uvicorn with the platform's logging."""
    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,  # keep our structlog configuration
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
