"""Encryption of exchange API credentials at rest: AES-256-GCM with a key derived from
TRADESTORE_SECRET_KEY (HKDF-SHA256), via `cryptography`.

A ciphertext is `version (1 byte) | key id (8) | nonce (12) | ciphertext + tag`. The key
id tells "encrypted under another TRADESTORE_SECRET_KEY" apart from "tampered with". Each
value is bound to its row and column (associated data `api_keys:<user>:<exchange>:<field>`),
so a ciphertext copied into another user's row, or a secret swapped with a key, does not
decrypt. The database never sees a plaintext.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tradestore.config import Settings, get_settings
from tradestore.db.errors import TradestoreError, ValidationError

__all__ = ["MIN_SECRET_LENGTH", "SecretBox", "SecretError"]

VERSION = 1
MIN_SECRET_LENGTH = 32
_NONCE = 12
_KEY_ID = 8
_HEADER = 1 + _KEY_ID + _NONCE


class SecretError(TradestoreError):
    """A ciphertext cannot be decrypted (wrong key, tampered, or not ours)."""


class SecretBox:
    """Encrypts and decrypts short secrets under one master secret."""

    def __init__(self, master_secret: str | bytes) -> None:
        raw = master_secret.encode("utf-8") if isinstance(master_secret, str) else master_secret
        if len(raw) < MIN_SECRET_LENGTH:
            raise ValidationError(
                "TRADESTORE_SECRET_KEY",
                f"must be at least {MIN_SECRET_LENGTH} characters of random text "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                f"{len(raw)} characters",
            )
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"tradestore",
            info=b"api_keys aes-256-gcm v1",
        ).derive(raw)
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"tradestore key id" + key).digest()[:_KEY_ID]

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id.hex()})"

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SecretBox:
        settings = settings or get_settings()
        if settings.TRADESTORE_SECRET_KEY is None:
            raise ValidationError(
                "TRADESTORE_SECRET_KEY",
                "must be set to store or read exchange API credentials",
                "unset",
            )
        return cls(settings.TRADESTORE_SECRET_KEY.get_secret_value())

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return bytes([VERSION]) + self.key_id + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> str:
        blob = bytes(blob)
        if len(blob) <= _HEADER or blob[0] != VERSION:
            raise SecretError("not a tradestore ciphertext (unknown format)")
        if blob[1 : 1 + _KEY_ID] != self.key_id:
            raise SecretError(
                "encrypted under a different TRADESTORE_SECRET_KEY; re-encrypt with the old "
                "key (tradestore.identity.apikeys.reencrypt_all)"
            )
        nonce = blob[1 + _KEY_ID : _HEADER]
        try:
            plain = self._aead.decrypt(nonce, blob[_HEADER:], context.encode("utf-8"))
        except InvalidTag:
            raise SecretError("ciphertext does not match its row (altered or moved)") from None
        return plain.decode("utf-8")

    def encrypted_by_me(self, blob: bytes) -> bool:
        blob = bytes(blob)
        return len(blob) > _HEADER and blob[0] == VERSION and blob[1 : 1 + _KEY_ID] == self.key_id
