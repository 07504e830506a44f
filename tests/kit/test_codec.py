"""The payload codec and its keys: AES-256-GCM, rotation, older plain payloads, refusals."""

from __future__ import annotations

import base64
import os
from decimal import Decimal

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from kit.codec import (
    ENCODING,
    KEY_ID,
    NONCE_BYTES,
    EncryptionCodec,
    PayloadKeyUnknown,
    PayloadUndecodable,
    data_converter,
)
from kit.settings import (
    DEV_TEMPORAL_PAYLOAD_KEYS,
    ConfigurationError,
    ProcessRole,
    Settings,
    TemporalSettings,
    payload_keyring,
)

SECRET = "Ada Lovelace, 12 St James's Square, London"


def key() -> bytes:
    return os.urandom(32)


def keys_text(*pairs: tuple[str, bytes]) -> str:
    return ",".join(f"{kid}:{base64.b64encode(k).decode()}" for kid, k in pairs)


def plain(text: str = SECRET) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_round_trip_hides_data_and_metadata() -> None:
    codec = EncryptionCodec([("k1", key())])
    original = plain()
    [stored] = await codec.encode([original])
    assert stored.metadata["encoding"] == ENCODING
    assert stored.metadata[KEY_ID] == b"k1"
    assert b"Lovelace" not in stored.SerializeToString()
    assert b"json/plain" not in stored.SerializeToString()  # the inner metadata is sealed too
    assert await codec.decode([stored]) == [original]


async def test_each_encryption_uses_a_fresh_nonce() -> None:
    codec = EncryptionCodec([("k1", key())])
    first, second = await codec.encode([plain(), plain()])
    assert first.data[:NONCE_BYTES] != second.data[:NONCE_BYTES]
    assert first.data != second.data


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    old, new = ("2025", key()), ("2026", key())
    [before] = await EncryptionCodec([old]).encode([plain()])
    rotated = EncryptionCodec([new, old])
    [after] = await rotated.encode([plain()])
    assert after.metadata[KEY_ID] == b"2026"
    assert await rotated.decode([before, after]) == [plain(), plain()]
    # Once the old key is dropped, its payloads are refused by name, not garbled.
    with pytest.raises(PayloadKeyUnknown, match="'2025'"):
        await EncryptionCodec([new]).decode([before])


async def test_unencrypted_payloads_of_older_runs_pass_through() -> None:
    codec = EncryptionCodec([("k1", key())])
    older = [plain(), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.decode(older) == older


async def test_tampered_ciphertext_is_refused() -> None:
    codec = EncryptionCodec([("k1", key())])
    [stored] = await codec.encode([plain()])
    flipped = bytearray(stored.data)
    flipped[-1] ^= 0x01
    altered = Payload(metadata=dict(stored.metadata), data=bytes(flipped))
    with pytest.raises(PayloadUndecodable, match="does not decrypt"):
        await codec.decode([altered])
    truncated = Payload(metadata=dict(stored.metadata), data=stored.data[:5])
    with pytest.raises(PayloadUndecodable):
        await codec.decode([truncated])


async def test_a_payload_under_the_same_id_but_another_key_is_refused() -> None:
    [foreign] = await EncryptionCodec([("k1", key())]).encode([plain()])
    with pytest.raises(PayloadUndecodable) as refused:
        await EncryptionCodec([("k1", key())]).decode([foreign])
    assert refused.value.code == "payload_undecodable"


async def test_unknown_key_id_is_a_clear_error() -> None:
    [stored] = await EncryptionCodec([("elsewhere", key())]).encode([plain()])
    with pytest.raises(PayloadKeyUnknown) as refused:
        await EncryptionCodec([("k1", key())]).decode([stored])
    assert refused.value.code == "payload_key_unknown"
    assert "elsewhere" in refused.value.message


async def test_the_platform_converter_encrypts_what_pydantic_serializes() -> None:
    temporal = TemporalSettings(payload_keys=keys_text(("k1", key())))
    converter = data_converter(temporal)
    [stored] = await converter.encode([{"name": SECRET, "total": Decimal("59.80")}])
    assert stored.metadata["encoding"] == ENCODING
    assert b"Lovelace" not in stored.data
    assert await converter.decode([stored], [dict]) == [{"name": SECRET, "total": "59.80"}]


def test_keys_are_read_in_order_and_validated() -> None:
    first, second = key(), key()
    text = f" a:{base64.b64encode(first).decode()} , b:{base64.urlsafe_b64encode(second).decode()}"
    assert payload_keyring(text) == (("a", first), ("b", second))
    assert payload_keyring(DEV_TEMPORAL_PAYLOAD_KEYS)[0] == (
        "dev",
        b"dev-only-payload-key-change-me!!",
    )


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "entry 1"),
        ("nokey", "entry 1"),
        (f"a:{base64.b64encode(b'x' * 16).decode()}", "32 bytes"),
        ("a:not base64!", "32 bytes"),
        (
            f"a:{base64.b64encode(b'x' * 32).decode()},a:{base64.b64encode(b'y' * 32).decode()}",
            "twice",
        ),
        (f"bad id:{base64.b64encode(b'x' * 32).decode()}", "entry 1"),
        (f"a:{base64.b64encode(b'x' * 32).decode()},", "entry 2"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(text: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint) as refused:
        TemporalSettings(payload_keys=text)
    assert "eHh4" not in str(refused.value)  # no key material in the message


PRODUCTION = {"ENV": "production"}
# A process with a Temporal client: it needs payload keys, in production not the public one.
WORKER = ProcessRole("worker", ("checkout",))


def test_production_refuses_the_development_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    real = keys_text(("2026-01", key()))
    monkeypatch.setenv("TEMPORAL_PAYLOAD_KEYS", DEV_TEMPORAL_PAYLOAD_KEYS)
    with pytest.raises(ConfigurationError, match="TEMPORAL_PAYLOAD_KEYS"):
        Settings().validate_for(WORKER)
    # Kept for decryption only, the public key is refused as well.
    monkeypatch.setenv("TEMPORAL_PAYLOAD_KEYS", f"{real},{DEV_TEMPORAL_PAYLOAD_KEYS}")
    with pytest.raises(ConfigurationError, match="development key"):
        Settings().validate_for(WORKER)
    monkeypatch.setenv("TEMPORAL_PAYLOAD_KEYS", real)
    assert Settings().validate_for(WORKER).temporal.keyring()[0][0] == "2026-01"


def test_production_without_keys_refuses_to_make_a_temporal_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    # A process that never talks to Temporal (a relay) starts without keys.
    settings = Settings().validate_for(ProcessRole("relay", ("cart",)))
    with pytest.raises(ConfigurationError, match="TEMPORAL_PAYLOAD_KEYS must be set"):
        data_converter(settings.temporal)


def test_development_uses_the_documented_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEMPORAL_PAYLOAD_KEYS", raising=False)
    monkeypatch.setenv("ENV", "dev")
    assert Settings().temporal.keyring() == payload_keyring(DEV_TEMPORAL_PAYLOAD_KEYS)


async def test_failure_messages_and_stack_traces_are_encrypted_too() -> None:
    converter = data_converter(TemporalSettings(payload_keys=keys_text(("k1", key()))))
    try:
        raise ApplicationError(f"duplicate key: {SECRET}", type="conflict")
    except ApplicationError as raised:
        failure = Failure()
        await converter.encode_failure(raised, failure)
    assert b"Lovelace" not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert SECRET in str(decoded)
    assert decoded.type == "conflict"
