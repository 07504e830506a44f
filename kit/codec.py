"""Temporal payloads encrypted with AES-256-GCM: what the platform sends Temporal is never plain.

Every client and worker converts payloads through `data_converter(settings.temporal)`: pydantic
JSON as before, then this codec. A payload Temporal stores is the whole serialized original
payload (its metadata and data), encrypted under the first key of `TEMPORAL_PAYLOAD_KEYS`, with a
random 96-bit nonce in front of the ciphertext and the key's id in the stored payload's metadata
(`encryption-key-id`), so any key of the ring decrypts what it once encrypted. Failure messages
and stack traces are encrypted the same way (the SDK's encoded failure attributes). Decoding passes
through payloads that are not encrypted (runs started before encryption was turned on), and
refuses an unknown key id or a ciphertext that does not authenticate, naming the key id only.

The web UI and the CLI decode through the API's codec endpoint (api/routers/codec.py), which
runs this same codec.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from kit.errors import DomainError
from kit.settings import TemporalSettings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
# Where the API serves the codec for the web UI and the CLI (`<this>/decode`, `<this>/encode`).
CODEC_ENDPOINT_PATH = "/v1/ops/temporal-codec"


class PayloadUndecodable(DomainError, code="payload_undecodable"):
    """An encrypted payload that none of the keys decrypts (altered, or encrypted elsewhere)."""


class PayloadKeyUnknown(PayloadUndecodable, code="payload_key_unknown"):
    """An encrypted payload whose key id is not in TEMPORAL_PAYLOAD_KEYS (a key dropped too early
    from a rotation, or another deployment's payload)."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads; the first key encrypts, every key decrypts."""

    def __init__(self, keyring: Sequence[tuple[str, bytes]]) -> None:
        if not keyring:
            raise ValueError("the payload codec needs at least one key")
        self._encrypting_id = keyring[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring}

    @classmethod
    def from_settings(cls, temporal: TemporalSettings) -> EncryptionCodec:
        """The codec of `TEMPORAL_PAYLOAD_KEYS`."""
        return cls(temporal.keyring())

    @property
    def encrypting_key_id(self) -> str:
        """The id new payloads are encrypted under."""
        return self._encrypting_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload encrypted whole (metadata and data) under the first key."""
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each encrypted payload decrypted; any other payload as it is."""
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload encrypted: nonce + ciphertext, the key id in the metadata."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._encrypting_id].encrypt(
            nonce, payload.SerializeToString(), None
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._encrypting_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """One payload decrypted; one that is not encrypted, unchanged."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyUnknown(
                f"payload encrypted under key id {key_id!r}, which TEMPORAL_PAYLOAD_KEYS lacks",
                key_id=key_id,
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            return Payload.FromString(cipher.decrypt(nonce, sealed, None))
        except (InvalidTag, ValueError, DecodeError) as exc:
            raise PayloadUndecodable(
                f"payload under key id {key_id!r} does not decrypt: altered or truncated",
                key_id=key_id,
            ) from exc


def data_converter(temporal: TemporalSettings) -> DataConverter:
    """The platform's payload conversion: pydantic JSON, encrypted by `TEMPORAL_PAYLOAD_KEYS`.

    Failures too: an error's message and stack trace (which may quote a value, such as a database
    error's key) travel as an encrypted payload; Temporal keeps only "Encoded failure" in plain.
    """
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec.from_settings(temporal),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
