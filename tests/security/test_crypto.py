"""The MediaNest crypto format: round trips, the exact layout, legacy and wrapped values, errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from medianest_workers.security import crypto
from medianest_workers.security.crypto import (
    CryptoError,
    DecryptionError,
    EmptyPlaintextError,
    InvalidSecretError,
    MalformedCiphertextError,
    decrypt,
    decrypt_optional,
    decrypt_with,
    encrypt,
    encrypt_optional,
    encrypt_with,
    is_current_format,
)
from medianest_workers.settings import SettingsError, reset_settings_cache

SECRET = "test-secret-0123456789abcdef-0123456789"
OTHER_SECRET = "another-secret-fedcba9876543210-fedcba98"
UNICODE_SECRET = "clé-secrète-ünïcødé-✓-0123456789abcdef"
PLAINTEXT = "plex-token-Zx9fK2qLm8"
NODE_SCRIPT = Path(__file__).with_name("node_crypto.js")
CURRENT = re.compile(r"[0-9a-f]+:[0-9a-f]{32}:[0-9a-f]{32}:[0-9a-f]{64}")

needs_node = pytest.mark.skipif(
    shutil.which("node") is None, reason="`node` is not installed: no interop check with Node"
)


# -- an independent implementation of the documented format (interop.md section 3) --


def reference_key(secret: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=16384, r=8, p=1).derive(secret.encode("utf-8"))


def reference_seal(plaintext: bytes, key: bytes, iv: bytes) -> tuple[bytes, bytes]:
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, encryptor.tag


def reference_encrypt(plaintext: bytes, secret: str) -> str:
    salt, iv = os.urandom(32), os.urandom(16)
    ciphertext, tag = reference_seal(plaintext, reference_key(secret, salt), iv)
    return f"{ciphertext.hex()}:{iv.hex()}:{tag.hex()}:{salt.hex()}"


def reference_encrypt_legacy(plaintext: bytes, secret: str) -> str:
    iv = os.urandom(16)
    ciphertext, tag = reference_seal(plaintext, reference_key(secret, b"salt"), iv)
    return f"{ciphertext.hex()}:{iv.hex()}:{tag.hex()}"


def reference_decrypt(stored: str, secret: str) -> bytes:
    ciphertext, iv, tag, salt = (bytes.fromhex(part) for part in stored.split(":"))
    decryptor = Cipher(algorithms.AES(reference_key(secret, salt)), modes.GCM(iv, tag)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def flip_hex_char(stored: str, part_index: int) -> str:
    parts = stored.split(":")
    part = parts[part_index]
    parts[part_index] = ("1" if part[0] == "0" else "0") + part[1:]
    return ":".join(parts)


def assert_leaks_nothing(error: BaseException, *sensitive: str) -> None:
    """Neither the message, the repr, the args nor any chained exception quotes `sensitive`."""
    assert error.__cause__ is None
    assert error.__context__ is None
    shown = [str(error), repr(error), *(repr(arg) for arg in error.args)]
    for text in shown:
        for value in sensitive:
            assert value not in text


@pytest.fixture
def encryption_key_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("ENCRYPTION_KEY", SECRET)
    monkeypatch.delenv("ENCRYPTION_KEY_FILE", raising=False)
    reset_settings_cache()
    yield SECRET
    reset_settings_cache()


# -- round trips and the exact format --


@pytest.mark.parametrize(
    "plaintext",
    [
        PLAINTEXT,
        "ünïcödé ✓ 日本語 🎬",
        "a:b:c:d",
        " ",
        "x" * 10_000,
    ],
    ids=["ascii", "unicode", "colons", "space", "long"],
)
def test_round_trip(plaintext: str) -> None:
    assert decrypt_with(encrypt_with(plaintext, secret=SECRET), secret=SECRET) == plaintext


def test_round_trip_with_a_non_ascii_secret() -> None:
    stored = encrypt_with(PLAINTEXT, secret=UNICODE_SECRET)
    assert decrypt_with(stored, secret=UNICODE_SECRET) == PLAINTEXT
    assert reference_decrypt(stored, UNICODE_SECRET) == PLAINTEXT.encode()


def test_every_encryption_has_its_own_salt_and_iv() -> None:
    first = encrypt_with(PLAINTEXT, secret=SECRET).split(":")
    second = encrypt_with(PLAINTEXT, secret=SECRET).split(":")
    assert first[0] != second[0]
    assert first[1] != second[1]
    assert first[3] != second[3]


def test_format_is_four_lowercase_hex_parts_with_the_documented_lengths() -> None:
    plaintext = "ünïcödé token"
    stored = encrypt_with(plaintext, secret=SECRET)
    assert CURRENT.fullmatch(stored)
    ciphertext, iv, tag, salt = stored.split(":")
    assert len(ciphertext) == 2 * len(plaintext.encode("utf-8"))
    assert (len(iv), len(tag), len(salt)) == (32, 32, 64)
    assert is_current_format(stored)


def test_output_decrypts_with_an_independent_implementation() -> None:
    stored = encrypt_with(PLAINTEXT, secret=SECRET)
    assert reference_decrypt(stored, SECRET) == PLAINTEXT.encode()


def test_reads_a_value_written_by_an_independent_implementation() -> None:
    stored = reference_encrypt("ünïcödé".encode(), SECRET)
    assert decrypt_with(stored, secret=SECRET) == "ünïcödé"


def test_reads_uppercase_hex_as_node_does() -> None:
    stored = encrypt_with(PLAINTEXT, secret=SECRET)
    assert decrypt_with(stored.upper(), secret=SECRET) == PLAINTEXT


# -- legacy and double-wrapped values --


def test_reads_legacy_three_part_values() -> None:
    stored = reference_encrypt_legacy("légacy token".encode(), SECRET)
    assert len(stored.split(":")) == 3
    assert decrypt_with(stored, secret=SECRET) == "légacy token"


def test_legacy_key_is_derived_once_per_secret() -> None:
    crypto._legacy_key.cache_clear()
    stored = reference_encrypt_legacy(PLAINTEXT.encode(), SECRET)
    decrypt_with(stored, secret=SECRET)
    decrypt_with(stored, secret=SECRET)
    info = crypto._legacy_key.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_legacy_value_under_another_key_is_a_decryption_error() -> None:
    stored = reference_encrypt_legacy(PLAINTEXT.encode(), OTHER_SECRET)
    with pytest.raises(DecryptionError):
        decrypt_with(stored, secret=SECRET)


def test_reads_double_wrapped_values() -> None:
    inner = encrypt_with(PLAINTEXT, secret=SECRET)
    assert decrypt_with(encrypt_with(inner, secret=SECRET), secret=SECRET) == PLAINTEXT


def test_reads_a_current_value_wrapped_in_a_legacy_one() -> None:
    inner = encrypt_with(PLAINTEXT, secret=SECRET)
    outer = reference_encrypt_legacy(inner.encode(), SECRET)
    assert decrypt_with(outer, secret=SECRET) == PLAINTEXT


def test_unwraps_up_to_three_layers_and_refuses_a_fourth() -> None:
    stored = PLAINTEXT
    for _ in range(3):
        stored = encrypt_with(stored, secret=SECRET)
    assert decrypt_with(stored, secret=SECRET) == PLAINTEXT
    with pytest.raises(MalformedCiphertextError, match="wrapped more than 3"):
        decrypt_with(encrypt_with(stored, secret=SECRET), secret=SECRET)


def test_a_wrapped_value_whose_inner_layer_is_under_another_key_does_not_decrypt() -> None:
    inner = encrypt_with(PLAINTEXT, secret=OTHER_SECRET)
    with pytest.raises(DecryptionError):
        decrypt_with(encrypt_with(inner, secret=SECRET), secret=SECRET)


def test_a_three_part_looking_plaintext_is_not_unwrapped() -> None:
    legacy_looking = reference_encrypt_legacy(b"x", SECRET)
    assert decrypt_with(encrypt_with(legacy_looking, secret=SECRET), secret=SECRET) == (
        legacy_looking
    )


# -- wrong key and tampering --


def test_wrong_key_is_a_decryption_error() -> None:
    stored = encrypt_with(PLAINTEXT, secret=OTHER_SECRET)
    with pytest.raises(DecryptionError) as caught:
        decrypt_with(stored, secret=SECRET)
    assert_leaks_nothing(caught.value, SECRET, OTHER_SECRET, stored, PLAINTEXT)


@pytest.mark.parametrize("part_index", [0, 1, 2, 3], ids=["ciphertext", "iv", "tag", "salt"])
def test_tampered_part_is_a_decryption_error(part_index: int) -> None:
    stored = flip_hex_char(encrypt_with(PLAINTEXT, secret=SECRET), part_index)
    with pytest.raises(DecryptionError) as caught:
        decrypt_with(stored, secret=SECRET)
    assert_leaks_nothing(caught.value, SECRET, stored, PLAINTEXT)


def test_truncated_ciphertext_is_a_decryption_error() -> None:
    ciphertext, *rest = encrypt_with(PLAINTEXT, secret=SECRET).split(":")
    with pytest.raises(DecryptionError):
        decrypt_with(":".join([ciphertext[:-2], *rest]), secret=SECRET)


def test_non_utf8_plaintext_is_a_decryption_error_that_does_not_quote_it() -> None:
    raw = b"\xffsecret-bytes\xfe"
    stored = reference_encrypt(raw, SECRET)
    with pytest.raises(DecryptionError, match="not UTF-8") as caught:
        decrypt_with(stored, secret=SECRET)
    assert_leaks_nothing(caught.value, SECRET, stored, "secret-bytes", repr(raw))


# -- malformed input --

_IV, _TAG, _SALT = "ab" * 16, "cd" * 16, "ef" * 32

MALFORMED = {
    "none": None,
    "int": 42,
    "bytes": f"00:{_IV}:{_TAG}:{_SALT}".encode(),
    "empty": "",
    "one-part": "abcdef",
    "two-parts": f"abcd:{_IV}",
    "five-parts": f"abcd:{_IV}:{_TAG}:{_SALT}:00",
    "empty-ciphertext": f":{_IV}:{_TAG}:{_SALT}",
    "empty-ciphertext-legacy": f":{_IV}:{_TAG}",
    "non-hex-ciphertext": f"zz99:{_IV}:{_TAG}:{_SALT}",
    "odd-length-ciphertext": f"abc:{_IV}:{_TAG}:{_SALT}",
    "spaces-in-ciphertext": f"ab cd:{_IV}:{_TAG}:{_SALT}",
    "non-hex-iv": f"abcd:{'g' * 32}:{_TAG}:{_SALT}",
    "short-iv": f"abcd:{'ab' * 12}:{_TAG}:{_SALT}",
    "long-tag": f"abcd:{_IV}:{'cd' * 17}:{_SALT}",
    "short-salt": f"abcd:{_IV}:{_TAG}:{'ef' * 16}",
    "empty-salt": f"abcd:{_IV}:{_TAG}:",
    "short-iv-legacy": f"abcd:{'ab' * 12}:{_TAG}",
    "signed-hex": f"+abc:{_IV}:{_TAG}:{_SALT}",
    "trailing-newline": f"abcd:{_IV}:{_TAG}:{_SALT}\n",
}


@pytest.mark.parametrize("stored", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_values_are_refused(stored: object) -> None:
    with pytest.raises(MalformedCiphertextError) as caught:
        decrypt_with(stored, secret=SECRET)  # type: ignore[arg-type]
    assert isinstance(caught.value, CryptoError)
    assert_leaks_nothing(caught.value, SECRET)
    if isinstance(stored, str) and stored.strip():
        assert_leaks_nothing(caught.value, stored, *[p for p in stored.split(":") if len(p) > 3])


def test_malformed_messages_name_the_problem() -> None:
    with pytest.raises(MalformedCiphertextError, match="2 ':'-separated parts"):
        decrypt_with(MALFORMED["two-parts"], secret=SECRET)
    with pytest.raises(MalformedCiphertextError, match="iv part has 24 hex characters"):
        decrypt_with(MALFORMED["short-iv"], secret=SECRET)
    with pytest.raises(MalformedCiphertextError, match="ciphertext part is empty"):
        decrypt_with(MALFORMED["empty-ciphertext"], secret=SECRET)
    with pytest.raises(MalformedCiphertextError, match="must be str, not NoneType"):
        decrypt_with(None, secret=SECRET)  # type: ignore[arg-type]


def test_is_current_format() -> None:
    assert is_current_format(encrypt_with(PLAINTEXT, secret=SECRET))
    assert not is_current_format(reference_encrypt_legacy(b"x", SECRET))
    assert not is_current_format(PLAINTEXT)
    assert not is_current_format(None)
    assert not is_current_format(MALFORMED["trailing-newline"])


# -- empty values, secrets, the settings default --


def test_empty_plaintext_is_refused() -> None:
    with pytest.raises(EmptyPlaintextError, match="store NULL") as caught:
        encrypt_with("", secret=SECRET)
    assert isinstance(caught.value, CryptoError)
    assert isinstance(caught.value, ValueError)


def test_non_str_plaintext_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="plaintext must be str"):
        encrypt_with(None, secret=SECRET)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secret", [None, "", "x" * 31, b"y" * 40], ids=["none", "empty", "31-chars", "bytes"]
)
def test_invalid_secret_is_refused_without_being_quoted(secret: object) -> None:
    with pytest.raises(InvalidSecretError, match="at least 32 characters") as caught:
        encrypt_with(PLAINTEXT, secret=secret)  # type: ignore[arg-type]
    if isinstance(secret, str) and secret:
        assert_leaks_nothing(caught.value, secret)
    with pytest.raises(InvalidSecretError):
        decrypt_with(encrypt_with(PLAINTEXT, secret=SECRET), secret=secret)  # type: ignore[arg-type]


def test_default_secret_comes_from_settings(encryption_key_env: str) -> None:
    stored = encrypt(PLAINTEXT)
    assert decrypt_with(stored, secret=encryption_key_env) == PLAINTEXT
    assert decrypt(encrypt_with(PLAINTEXT, secret=encryption_key_env)) == PLAINTEXT


def test_optional_variants_map_null(encryption_key_env: str) -> None:
    assert encrypt_optional(None) is None
    assert encrypt_optional("") is None
    assert decrypt_optional(None) is None
    stored = encrypt_optional(PLAINTEXT)
    assert stored is not None
    assert decrypt_optional(stored) == PLAINTEXT


def test_unset_encryption_key_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("ENCRYPTION_KEY_FILE", raising=False)
    reset_settings_cache()
    try:
        with pytest.raises(SettingsError, match="ENCRYPTION_KEY"):
            encrypt(PLAINTEXT)
        with pytest.raises(SettingsError, match="ENCRYPTION_KEY"):
            decrypt(encrypt_with(PLAINTEXT, secret=SECRET))
    finally:
        reset_settings_cache()


# -- interop with Node's crypto, as the backend uses it --


def run_node(command: str, data: str, *, secret: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(NODE_SCRIPT), command],
        input=data,
        env={**os.environ, "ENCRYPTION_KEY": secret},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def node(command: str, data: str, *, secret: str) -> str:
    result = run_node(command, data, secret=secret)
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_node
@pytest.mark.parametrize("secret", [SECRET, UNICODE_SECRET], ids=["ascii-secret", "unicode-secret"])
def test_python_reads_what_node_writes(secret: str) -> None:
    plaintext = "ünïcödé plex token ✓ 🎬"
    stored = node("encrypt", plaintext, secret=secret)
    assert CURRENT.fullmatch(stored)
    assert decrypt_with(stored, secret=secret) == plaintext


@needs_node
@pytest.mark.parametrize("secret", [SECRET, UNICODE_SECRET], ids=["ascii-secret", "unicode-secret"])
def test_node_reads_what_python_writes(secret: str) -> None:
    plaintext = "ünïcödé plex token ✓ 🎬"
    assert node("decrypt", encrypt_with(plaintext, secret=secret), secret=secret) == plaintext


@needs_node
def test_python_reads_node_legacy_values() -> None:
    stored = node("encrypt-legacy", PLAINTEXT, secret=SECRET)
    assert len(stored.split(":")) == 3
    assert decrypt_with(stored, secret=SECRET) == PLAINTEXT


@needs_node
def test_python_reads_node_double_wrapped_values() -> None:
    inner = node("encrypt", PLAINTEXT, secret=SECRET)
    outer = node("encrypt", inner, secret=SECRET)
    assert decrypt_with(outer, secret=SECRET) == PLAINTEXT


@needs_node
def test_node_refuses_python_values_under_another_key() -> None:
    result = run_node("decrypt", encrypt_with(PLAINTEXT, secret=OTHER_SECRET), secret=SECRET)
    assert result.returncode == 1
    assert PLAINTEXT not in result.stdout
