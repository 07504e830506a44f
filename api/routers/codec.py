"""The payload codec for operators: the Temporal web UI and CLI decode encrypted payloads here.

Temporal's remote-codec protocol: `POST <endpoint>/decode` (and `/encode`) with the JSON form of
a `Payloads` message, `{"payloads": [{"metadata": {name: base64}, "data": base64}]}`, answered in
the same form; the UI adds `X-Namespace` (ignored: the keys are the deployment's, not a
namespace's). The endpoint is `CODEC_ENDPOINT_PATH` on the API.

Who may call it: an operator's bearer token (401 without a valid one, 403 for any other scope).
While the payload keys are only the public development key, a call without a token is served
too: the dev server's web UI has no login and cannot send one, and what it would decode is
readable by anyone with the published key anyway. ENV=production refuses that key, so there a
token is always needed (docs/operations.md, "Payload encryption").

Browsers: only the web UI's origin (that of `TEMPORAL_UI_URL`) may call it cross-origin;
`CodecCors` answers its preflights and marks the answers, errors included, for that origin.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.protobuf import json_format
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from api.auth import Principal
from api.deps import PlatformDep, principal
from api.errors import ApiError, problem
from kit.codec import CODEC_ENDPOINT_PATH, EncryptionCodec
from kit.settings import DEV_TEMPORAL_PAYLOAD_KEYS, Settings, payload_keyring

router = APIRouter(tags=["operations"])

_bearer = HTTPBearer(auto_error=False, description="An operator's JWT")

# What the web UI sends: its JSON body, the namespace, and the operator's token when the UI is
# configured to pass it.
ALLOWED_HEADERS = "authorization, content-type, x-namespace"
PREFLIGHT_MAX_AGE_S = "600"

_PAYLOADS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["payloads"],
    "properties": {
        "payloads": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "metadata": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "format": "byte"},
                    },
                    "data": {"type": "string", "format": "byte"},
                },
            },
        }
    },
}
_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _PAYLOADS_SCHEMA}}}
}
_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": _PAYLOADS_SCHEMA}}}
}


def ui_origin(settings: Settings) -> str:
    """The web UI's origin (scheme://host[:port]) from TEMPORAL_UI_URL."""
    parts = urlsplit(settings.temporal.ui_url)
    return f"{parts.scheme}://{parts.netloc}"


def open_without_token(settings: Settings) -> bool:
    """Whether the payload keys are exactly the public development key."""
    return settings.temporal.keyring() == payload_keyring(DEV_TEMPORAL_PAYLOAD_KEYS)


async def codec_caller(
    wired: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """An operator (401/403 otherwise); nobody needed while only the development key is set."""
    if credentials is None and open_without_token(wired.settings):
        return None
    caller = await principal(wired, credentials)
    if not caller.is_operator:
        raise ApiError(403, "forbidden", "the 'operator' scope is required")
    return caller


CodecCaller = Annotated[Principal | None, Depends(codec_caller)]


@lru_cache(maxsize=4)
def _codec(keyring: tuple[tuple[str, bytes], ...]) -> EncryptionCodec:
    return EncryptionCodec(keyring)


async def _payloads(request: Request) -> list[Payload]:
    """The request's payloads, or 422 `validation_error`."""
    message = Payloads()
    try:
        json_format.Parse(await request.body(), message)
    except (json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(422, "validation_error", f"not a Payloads message: {exc}") from None
    return list(message.payloads)


def _answer(payloads: list[Payload]) -> JSONResponse:
    return JSONResponse({"payloads": [json_format.MessageToDict(p) for p in payloads]})


@router.post(
    f"{CODEC_ENDPOINT_PATH}/decode", openapi_extra=_BODY, responses=_ANSWER, response_model=None
)
async def decode(request: Request, wired: PlatformDep, _: CodecCaller) -> JSONResponse:
    """Encrypted payloads decrypted; others as they are (422 `payload_key_unknown`,
    `payload_undecodable` for a key id not configured or a payload that does not decrypt)."""
    codec = _codec(wired.settings.temporal.keyring())
    return _answer(await codec.decode(await _payloads(request)))


@router.post(
    f"{CODEC_ENDPOINT_PATH}/encode", openapi_extra=_BODY, responses=_ANSWER, response_model=None
)
async def encode(request: Request, wired: PlatformDep, _: CodecCaller) -> JSONResponse:
    """Payloads encrypted under the current key, as a worker would store them."""
    codec = _codec(wired.settings.temporal.keyring())
    return _answer(await codec.encode(await _payloads(request)))


class CodecCors:
    """CORS for the codec endpoint only, and only for the web UI's origin.

    A preflight from that origin is answered 204 with what the UI sends (POST; the headers in
    ALLOWED_HEADERS; credentials, for a UI that includes them); from any other origin, 403 with no
    CORS headers, so the browser refuses. Every codec answer to the UI's origin carries
    `Access-Control-Allow-Origin`, errors too, so the UI sees a 401 as a 401.
    """

    def __init__(self, app: ASGIApp, origin: str) -> None:
        self.app, self.origin = app, origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(CODEC_ENDPOINT_PATH + "/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        from_ui = headers.get("origin") == self.origin
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(from_ui, headers)(scope, receive, send)
            return
        if not from_ui:
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._mark(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, marked)

    def _preflight(self, from_ui: bool, headers: Headers) -> Response:
        if not from_ui or headers["access-control-request-method"] != "POST":
            return problem(403, "forbidden", "cross-origin calls come from the web UI only")
        answer = Response(status_code=204)
        self._mark(answer.headers)
        answer.headers["Access-Control-Allow-Methods"] = "POST"
        answer.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        answer.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
        return answer

    def _mark(self, headers: MutableHeaders) -> None:
        headers["Access-Control-Allow-Origin"] = self.origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers.add_vary_header("Origin")
