"""The sandbox provider's signing keys: one current RSA (RS256) and one current EC P-256 (ES256)
key, kept in a JSON file so a restart of the sandbox keeps them (and the tokens it issued).

A rotation makes a new key current for its algorithm; the key it replaces stays published in the
key set until the next rotation, so tokens signed before the rotation remain verifiable, as real
providers do.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from kit.logging import get_logger

log = get_logger(__name__)

Algorithm = Literal["RS256", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256")
# Keys published per algorithm: the current one and the one it replaced.
PUBLISHED_PER_ALGORITHM = 2
RSA_BITS = 2048

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SigningKey:
    """One private key and its public JWK."""

    kid: str
    alg: Algorithm
    private: PrivateKey
    created: int

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK with `kid`, `alg` and `use`."""
        if isinstance(self.private, rsa.RSAPrivateKey):
            fields = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            fields = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**fields, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of `claims` with this key's `kid` in the header."""
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})

    def to_record(self) -> dict[str, Any]:
        """What the file keeps."""
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {"kid": self.kid, "alg": self.alg, "created": self.created, "pem": pem.decode()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SigningKey:
        """A key read back from the file."""
        private = serialization.load_pem_private_key(record["pem"].encode(), password=None)
        if not isinstance(private, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ValueError(f"key {record['kid']} is neither RSA nor EC")
        return cls(record["kid"], record["alg"], private, int(record["created"]))


def new_key(alg: Algorithm) -> SigningKey:
    """A fresh key with a random kid."""
    private: PrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(f"{alg.lower()}-{secrets.token_hex(8)}", alg, private, int(time.time()))


class KeyRing:
    """The keys, oldest first, persisted to `path` on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: list[SigningKey] = []
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Read the file, creating a key for any algorithm that has none."""
        async with self._lock:
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        if self.path.exists():
            records = json.loads(self.path.read_text())["keys"]
            self._keys = [SigningKey.from_record(r) for r in records]
        missing = [alg for alg in ALGORITHMS if not any(k.alg == alg for k in self._keys)]
        if missing:
            self._keys.extend(new_key(alg) for alg in missing)
            self._save()
        log.info("sandbox.oidc.keys_loaded", kids=[k.kid for k in self.published()])

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        body = json.dumps({"keys": [k.to_record() for k in self._keys]}, indent=2)
        # Private keys: readable by the sandbox's user only.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        os.replace(partial, self.path)

    def current(self, alg: Algorithm) -> SigningKey:
        """The key that signs new tokens of `alg`."""
        return [k for k in self._keys if k.alg == alg][-1]

    def published(self) -> list[SigningKey]:
        """The keys in the key set: per algorithm, the current one and its predecessor."""
        shown: list[SigningKey] = []
        for alg in ALGORITHMS:
            shown.extend([k for k in self._keys if k.alg == alg][-PUBLISHED_PER_ALGORITHM:])
        return shown

    async def rotate(self, algorithms: tuple[Algorithm, ...] = ALGORITHMS) -> list[SigningKey]:
        """New current keys for `algorithms`; keys no longer published are forgotten."""
        async with self._lock:
            fresh = [await asyncio.to_thread(new_key, alg) for alg in algorithms]
            self._keys.extend(fresh)
            kept = {k.kid for k in self.published()}
            self._keys = [k for k in self._keys if k.kid in kept]
            await asyncio.to_thread(self._save)
        log.info("sandbox.oidc.keys_rotated", kids=[k.kid for k in fresh])
        return fresh
