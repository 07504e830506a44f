"""`python -m sandbox`: the payment-provider sandbox on the port of PSP_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import uvicorn

from kit.logging import configure_logging, get_logger
from kit.settings import ProcessRole, get_settings
from sandbox.psp import create_app
from sandbox.settings import get_sandbox_settings

HOST = "127.0.0.1"
# A tok_flaky "hang" holds a request open; shutdown does not wait for it longer than this.
GRACEFUL_SHUTDOWN_S = 5


def main() -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then drains requests and the lifespan stops the loops."""
    settings = get_settings().validate_for(ProcessRole("sandbox"))
    configure_logging(settings)
    url = urlsplit(settings.psp.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    get_logger(__name__).info("sandbox.starting", host=HOST, port=port)
    uvicorn.run(
        create_app(settings, get_sandbox_settings()),
        host=HOST,
        port=port,
        log_config=None,  # configure_logging already routes uvicorn's loggers
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main()
