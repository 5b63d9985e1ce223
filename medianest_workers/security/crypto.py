"""Encryption of secret columns, byte-compatible with the MediaNest backend.

`users.plex_token` and `service_config.api_key` hold AES-256-GCM ciphertexts that the Node
backend writes and reads (tests/contracts/medianest-interop.md section 3). This module
writes exactly that format and reads every shape the backend has produced:

- current: lowercase hex ``ciphertext:iv:tag:salt``; key = scrypt(secret, salt), 16-byte IV
  (GCM nonce), 16-byte tag, 32-byte salt, no associated data;
- legacy (read only): ``ciphertext:iv:tag``; key = scrypt(secret, b"salt");
- double-wrapped: a decrypted value that is itself a current-format value is decrypted again,
  up to `MAX_WRAP_DEPTH` layers.

An empty plaintext is never stored (its ciphertext part would be empty; the column holds NULL):
`encrypt("")` raises `EmptyPlaintextError`, `encrypt_optional` maps None and "" to None.

Every failure is a `CryptoError`. Messages name the problem (part count, which part, lengths),
never the secret, the stored value or the plaintext, and carry no chained exception: errors are
raised outside `except` blocks, so neither `__cause__` nor `__context__` holds library errors
that could quote the data.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medianest_workers.errors import MedianestWorkersError
from medianest_workers.settings import MIN_ENCRYPTION_KEY_LENGTH, get_settings

SCRYPT_N = 16384
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024  # the work needs 128 * r * N = 16 MiB
KEY_LENGTH = 32
SALT_LENGTH = 32
IV_LENGTH = 16
TAG_LENGTH = 16
LEGACY_SALT = b"salt"
MAX_WRAP_DEPTH = 3

_HEX = re.compile(r"[0-9a-fA-F]*")
_CURRENT_FORMAT = re.compile(
    rf"(?:[0-9a-fA-F]{{2}})+:[0-9a-fA-F]{{{IV_LENGTH * 2}}}"
    rf":[0-9a-fA-F]{{{TAG_LENGTH * 2}}}:[0-9a-fA-F]{{{SALT_LENGTH * 2}}}"
)


class CryptoError(MedianestWorkersError):
    """Base of every error of this module; the message never holds secret or data."""


class InvalidSecretError(CryptoError, ValueError):
    """The secret is not a string of at least 32 characters."""


class EmptyPlaintextError(CryptoError, ValueError):
    """An empty plaintext cannot be stored; store NULL (see `encrypt_optional`)."""


class MalformedCiphertextError(CryptoError):
    """The stored value is not in any format the backend writes."""


class DecryptionError(CryptoError):
    """The value is well formed but does not decrypt: wrong key, or tampered with."""


@dataclass(frozen=True, slots=True)
class _Envelope:
    ciphertext: bytes
    iv: bytes
    tag: bytes
    salt: bytes | None  # None: legacy value, fixed salt


def encrypt(plaintext: str) -> str:
    """Encrypt under ENCRYPTION_KEY (settings); raises SettingsError when it is unset."""
    return encrypt_with(plaintext, secret=_default_secret())


def decrypt(stored: str) -> str:
    """Decrypt a stored value under ENCRYPTION_KEY (settings)."""
    return decrypt_with(stored, secret=_default_secret())


def encrypt_optional(plaintext: str | None) -> str | None:
    """Like `encrypt`, but None and "" become None (the column's NULL)."""
    return encrypt(plaintext) if plaintext else None


def decrypt_optional(stored: str | None) -> str | None:
    """Like `decrypt`, but a NULL column (None) stays None."""
    return None if stored is None else decrypt(stored)


def encrypt_with(plaintext: str, *, secret: str) -> str:
    """Encrypt `plaintext` under `secret` in the current format `ciphertext:iv:tag:salt`."""
    _check_secret(secret)
    if not isinstance(plaintext, str):
        raise TypeError(f"plaintext must be str, not {type(plaintext).__name__}")
    if plaintext == "":
        raise EmptyPlaintextError("an empty plaintext is never stored: store NULL instead")
    salt = os.urandom(SALT_LENGTH)
    iv = os.urandom(IV_LENGTH)
    sealed = AESGCM(_derive_key(secret, salt)).encrypt(iv, plaintext.encode("utf-8"), None)
    ciphertext, tag = sealed[:-TAG_LENGTH], sealed[-TAG_LENGTH:]
    return ":".join(part.hex() for part in (ciphertext, iv, tag, salt))


def decrypt_with(stored: str, *, secret: str) -> str:
    """Decrypt a current, legacy or double-wrapped value under `secret`."""
    _check_secret(secret)
    value = _open(_parse(stored), secret)
    for _ in range(MAX_WRAP_DEPTH - 1):
        if not is_current_format(value):
            return value
        value = _open(_parse(value), secret)
    if is_current_format(value):
        raise MalformedCiphertextError(f"value is wrapped more than {MAX_WRAP_DEPTH} times")
    return value


def is_current_format(value: object) -> bool:
    """Whether `value` has the shape of a current-format ciphertext (not whether it decrypts)."""
    return isinstance(value, str) and _CURRENT_FORMAT.fullmatch(value) is not None


def _default_secret() -> str:
    return get_settings().require_encryption_key()


def _check_secret(secret: object) -> None:
    if not isinstance(secret, str) or len(secret) < MIN_ENCRYPTION_KEY_LENGTH:
        raise InvalidSecretError(
            f"the secret must be a str of at least {MIN_ENCRYPTION_KEY_LENGTH} characters"
        )


def _parse(stored: object) -> _Envelope:
    if not isinstance(stored, str):
        raise MalformedCiphertextError(f"stored value must be str, not {type(stored).__name__}")
    parts = stored.split(":")
    if len(parts) not in (3, 4):
        raise MalformedCiphertextError(
            f"stored value has {len(parts)} ':'-separated parts, expected 4 (or 3, legacy)"
        )
    return _Envelope(
        ciphertext=_hex_part(parts[0], "ciphertext", None),
        iv=_hex_part(parts[1], "iv", IV_LENGTH),
        tag=_hex_part(parts[2], "tag", TAG_LENGTH),
        salt=_hex_part(parts[3], "salt", SALT_LENGTH) if len(parts) == 4 else None,
    )


def _hex_part(part: str, name: str, length: int | None) -> bytes:
    if not part:
        raise MalformedCiphertextError(f"the {name} part is empty")
    if _HEX.fullmatch(part) is None or len(part) % 2:
        raise MalformedCiphertextError(f"the {name} part is not hex")
    if length is not None and len(part) != length * 2:
        raise MalformedCiphertextError(
            f"the {name} part has {len(part)} hex characters, expected {length * 2}"
        )
    return bytes.fromhex(part)


def _open(envelope: _Envelope, secret: str) -> str:
    key = _legacy_key(secret) if envelope.salt is None else _derive_key(secret, envelope.salt)
    try:
        plaintext = AESGCM(key).decrypt(envelope.iv, envelope.ciphertext + envelope.tag, None)
    except InvalidTag:
        plaintext = None
    if plaintext is None:  # raised here, outside `except`: no chained context
        raise DecryptionError("the value does not decrypt: wrong key, or tampered with")
    return _utf8(plaintext)


def _utf8(plaintext: bytes) -> str:
    try:
        text: str | None = plaintext.decode("utf-8")
    except UnicodeDecodeError:  # its repr would quote the plaintext bytes
        text = None
    if text is None:
        raise DecryptionError("the decrypted value is not UTF-8 text")
    return text


def _derive_key(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
        dklen=KEY_LENGTH,
    )


@functools.lru_cache(maxsize=8)
def _legacy_key(secret: str) -> bytes:
    """The legacy format's fixed-salt key, derived once per secret (scrypt costs ~50 ms)."""
    return _derive_key(secret, LEGACY_SALT)
