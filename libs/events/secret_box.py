"""Sealing secret values for the executors: a NaCl sealed box (X25519 + XSalsa20-Poly1305).

Whoever holds the public key can seal a value, only the private key opens it. So the gateway, given
only the public key, can store a value it can never read back, and the secrets bucket on disk holds
nothing an attacker without the executors' key can use. The sealed text carries the secret's name:
a value copied under another name does not open as that name's.

Key files hold the 32-byte key in base64 on one line. The private key file must be readable by its
owner only (mode 0600), as ssh insists for its keys.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from nacl.encoding import Base64Encoder
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

PRIVATE_KEY_FILE = "secrets.key"
PUBLIC_KEY_FILE = "secrets.pub"


class SecretKeyError(Exception):
    """A key file is missing, malformed or too open; the message says which and what to do."""


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL with the final mode: the file is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_key_pair(directory: Path) -> tuple[Path, Path]:
    """The (private, public) key files in `directory`, generated on first use and kept after that
    (the private one 0600, the public one 0644; the directory is made 0700 if missing). A public key
    lost beside its private key is derived again."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    if not private_path.exists():
        key = PrivateKey.generate()
        _write_new(private_path, key.encode(Base64Encoder) + b"\n", 0o600)
        public_path.unlink(missing_ok=True)
    if not public_path.exists():
        public = load_private_key(private_path).public_key
        _write_new(public_path, public.encode(Base64Encoder) + b"\n", 0o644)
    return private_path, public_path


def _read_key(path: Path, what: str, setting: str) -> bytes:
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        reason = exc.strerror or exc
        raise SecretKeyError(f"cannot read the secrets {what} key {path}: {reason} (set {setting})") from exc
    try:
        raw = Base64Encoder.decode(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise SecretKeyError(f"{path} is not a secrets {what} key: expected 32 bytes in base64 on one line")
    return raw


def load_public_key(path: Path) -> PublicKey:
    """The public key in `path` (`SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE`)."""
    return PublicKey(_read_key(path, "public", "SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE"))


def load_private_key(path: Path) -> PrivateKey:
    """The private key in `path` (`SCRIPTBUS_SECRETS_KEY_FILE`); refused when others may read the file."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SecretKeyError(
            f"cannot read the secrets private key {path}: {exc.strerror or exc} (set SCRIPTBUS_SECRETS_KEY_FILE)"
        ) from exc
    if stat.S_IMODE(mode) & 0o077:
        raise SecretKeyError(f"{path} may be read by others (mode {stat.S_IMODE(mode):04o}): run chmod 600 {path}")
    return PrivateKey(_read_key(path, "private", "SCRIPTBUS_SECRETS_KEY_FILE"))


def seal(public_key: PublicKey, name: str, value: str) -> bytes:
    """`value` of secret `name`, sealed: only the matching private key opens it."""
    plain = json.dumps({"name": name, "value": value}, ensure_ascii=False).encode()
    return SealedBox(public_key).encrypt(plain)


def unseal(private_key: PrivateKey, name: str, sealed: bytes) -> str:
    """The value sealed by `seal` for secret `name`; SecretKeyError when it was sealed for another key
    or another name."""
    try:
        plain = json.loads(SealedBox(private_key).decrypt(sealed))
    except (CryptoError, ValueError) as exc:
        raise SecretKeyError(
            f"secret {name!r} cannot be opened with this executor's key: it was sealed for another key pair"
        ) from exc
    if not isinstance(plain, dict) or plain.get("name") != name or not isinstance(plain.get("value"), str):
        raise SecretKeyError(f"the value stored for secret {name!r} was sealed for another secret")
    value: str = plain["value"]
    return value
