"""`just up` with AUTH_ISSUER naming the sandbox's OpenID provider, used through HTTP as a client
would: an RS256 token accepted, a key rotated in without a restart, and HS256, a wrong audience
and an expired token refused."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

import httpx
import jwt
import psutil
import pytest

from sandbox.settings import DEV_OIDC_CLIENTS
from tests.devstack.test_stack import BANNER_END, _up, _wait_for_line, stack_env  # noqa: F401

OPERATOR = ("shopctl", str(DEV_OIDC_CLIENTS["shopctl"]["secret"]))
STUCK = "/v1/ops/checkouts/stuck"


def _token(psp: str, **form: str) -> str:
    answer = httpx.post(
        f"{psp}/oidc/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=OPERATOR,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def _status(api: str, token: str) -> int:
    answer = httpx.get(f"{api}{STUCK}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return answer.status_code


def _stop(up: subprocess.Popen[str]) -> None:
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_up_with_an_issuer(stack_env: dict[str, str]) -> None:  # noqa: F811
    psp, api = stack_env["PSP_URL"], f"http://127.0.0.1:{stack_env['API_PORT']}"
    env = {
        **stack_env,
        "AUTH_ISSUER": f"{psp}/oidc",
        "AUTH_JWKS_MIN_REFRESH_S": "1",
        "AUTH_LEEWAY_S": "0",
    }
    up, lines, _ = _up(env)
    try:
        output = "".join(_wait_for_line(lines, BANNER_END, timeout=180, process=up))
        assert f"RS256/ES256 from {psp}/oidc" in output
        children = psutil.Process(up.pid).children(recursive=True)

        first = _token(psp)
        assert jwt.get_unverified_header(first)["alg"] == "RS256"
        assert _status(api, first) == 200
        # Rotation at the provider; the API has the old key set cached and is not restarted.
        rotated = httpx.post(f"{psp}/oidc/keys/rotate", params={"alg": "RS256"}, timeout=10)
        second = _token(psp)
        assert jwt.get_unverified_header(second)["kid"] == rotated.json()["current"]["RS256"]
        time.sleep(1.1)  # AUTH_JWKS_MIN_REFRESH_S since the last fetch
        assert _status(api, second) == 200
        assert _status(api, _token(psp, alg="ES256")) == 200

        expiring = _token(psp, expires_in="1")
        hs256 = jwt.encode(
            {"sub": str(uuid.uuid4()), "scopes": ["operator"], "exp": int(time.time()) + 600},
            "dev-only-jwt-secret-change-me-0123456789abcdef",  # the documented dev secret
            algorithm="HS256",
        )
        assert _status(api, hs256) == 401
        assert _status(api, _token(psp, audience="some-other-api")) == 401
        time.sleep(2.1)
        assert _status(api, expiring) == 401
        minted = httpx.post(
            f"{api}/v1/dev/tokens", json={"user_id": str(uuid.uuid4()), "scopes": ["operator"]}
        )
        assert minted.status_code == 404
    finally:
        _stop(up)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"orphans left behind: {alive}"
