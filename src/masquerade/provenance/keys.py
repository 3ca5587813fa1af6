"""The key that signs masquerade's content credentials (C2PA manifests).

On first use masquerade creates, for this user, an EC P-256 key and a two-certificate chain: a local CA
(its key is thrown away once the leaf is signed, so nothing else can be issued under it) and a leaf
with the extensions C2PA requires of a signing certificate (key usage digitalSignature, critical;
extended key usage emailProtection; authority and subject key identifiers; not a CA). Key and chain
live in one PEM file, ``<home>/keys/c2pa-signer.pem``, created with 0600 permissions in a 0700 folder.

Such a chain is not on any C2PA trust list: readers report the signature valid, the signer untrusted.
A user who has a certificate from a CA can use it instead (``MASQUERADE_C2PA_CERT`` and
``MASQUERADE_C2PA_KEY``, PEM files, or ``SigningIdentity.from_files`` in the Python API).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from masquerade.errors import OutputError, UsageError

CERT_ENV = "MASQUERADE_C2PA_CERT"
KEY_ENV = "MASQUERADE_C2PA_KEY"
KEY_FILE_NAME = "c2pa-signer.pem"
LEAF_DAYS = 5 * 365
RENEW_BEFORE = dt.timedelta(days=1)


def masquerade_home() -> Path:
    """``MASQUERADE_HOME``, else the per-user data folder (keys must not live in a cache folder)."""
    env = os.environ.get("MASQUERADE_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("APPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Roaming") / "masquerade"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "masquerade"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "masquerade"


@dataclass(frozen=True)
class SigningIdentity:
    """A private key (PEM) and its certificate chain (PEM, leaf first), and the C2PA algorithm."""

    private_key_pem: bytes
    cert_chain_pem: bytes
    alg: str
    """C2PA signing algorithm name: es256, es384, es512, ps256 or ed25519."""
    origin: str
    """Where it came from, for messages: a file path, or "masquerade's own key"."""

    @classmethod
    def from_pem(cls, key_pem: bytes, chain_pem: bytes, origin: str) -> SigningIdentity:
        """Check that the key parses, the chain parses and the leaf certifies this key."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{origin}: not an unencrypted PEM private key ({exc})") from exc
        try:
            certs = x509.load_pem_x509_certificates(chain_pem)
        except ValueError as exc:
            raise UsageError(f"{origin}: no PEM certificate chain ({exc})") from exc
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.PEM, public) != certs[0].public_key(
        ).public_bytes(serialization.Encoding.PEM, public):
            raise UsageError(f"{origin}: the first certificate does not belong to the private key")
        key_only = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        return cls(key_only, chain, _algorithm(key, origin), origin)

    @classmethod
    def from_files(cls, cert: Path, key: Path) -> SigningIdentity:
        """A user's own certificate chain and key (PEM files)."""
        try:
            return cls.from_pem(Path(key).read_bytes(), Path(cert).read_bytes(), f"{cert} / {key}")
        except OSError as exc:
            raise UsageError(f"cannot read signing certificate or key: {exc}") from exc

    def leaf_not_after(self) -> dt.datetime:
        from cryptography import x509

        return x509.load_pem_x509_certificates(self.cert_chain_pem)[0].not_valid_after_utc


def _algorithm(key: object, origin: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise UsageError(f"{origin}: C2PA cannot sign with this kind of key (use EC P-256/384/521, RSA, Ed25519)")


def signing_identity(home: Path | None = None) -> SigningIdentity:
    """The identity to sign with: the user's own (environment) if set, else masquerade's per-user key,
    created on first use."""
    cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    if cert or key:
        if not (cert and key):
            raise UsageError(f"set both {CERT_ENV} and {KEY_ENV} to sign with your own certificate")
        return SigningIdentity.from_files(Path(cert).expanduser(), Path(key).expanduser())
    return load_or_create_identity((home or masquerade_home()) / "keys")


def load_or_create_identity(folder: Path) -> SigningIdentity:
    """Load ``folder/c2pa-signer.pem``; create it (0600) when missing or about to expire."""
    path = folder / KEY_FILE_NAME
    if path.exists():
        _tighten(folder, 0o700)
        _tighten(path, 0o600)
        data = _read(path)
        try:
            identity = SigningIdentity.from_pem(data, data, str(path))
        except UsageError as exc:
            raise OutputError(
                f"masquerade's signing key {path} is damaged ({exc}); delete that file and the next run "
                "makes a new key (files signed with the old one stay verifiable)"
            ) from None
        if identity.leaf_not_after() - RENEW_BEFORE > dt.datetime.now(dt.timezone.utc):
            return identity
        return _write_new(folder, replace=True)
    return _write_new(folder, replace=False)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OutputError(f"cannot read the signing key {path}: {exc.strerror}") from exc


def _tighten(path: Path, mode: int) -> None:
    """Our key folder and file must stay private: drop group/other bits if something widened them."""
    with contextlib.suppress(OSError):
        if sys.platform != "win32" and stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(mode)


def _write_new(folder: Path, replace: bool) -> SigningIdentity:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _tighten(folder, 0o700)  # an existing folder keeps its mode through mkdir
    except OSError as exc:
        raise OutputError(
            f"cannot create the key folder {folder} ({exc.strerror}); set MASQUERADE_HOME to a writable "
            f"folder, or {CERT_ENV} and {KEY_ENV} to your own certificate"
        ) from exc
    key_pem, chain_pem = create_key_and_chain()
    path = folder / KEY_FILE_NAME
    temp = folder / f".{KEY_FILE_NAME}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem + chain_pem)
        if replace:
            os.replace(temp, path)
        else:
            # link() fails if another process created the key meanwhile: then everyone uses theirs.
            try:
                os.link(temp, path)
            except FileExistsError:
                data = _read(path)
                return SigningIdentity.from_pem(data, data, str(path))
            except OSError:  # file systems without hard links
                os.replace(temp, path)
    except OSError as exc:
        raise OutputError(
            f"cannot write the signing key in {folder} ({exc.strerror}); set MASQUERADE_HOME to a writable "
            "folder"
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return SigningIdentity.from_pem(key_pem, chain_pem, str(path))


def create_key_and_chain(days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
    """A new EC P-256 key (PKCS#8 PEM) and its chain (leaf, then the one-off local CA) that C2PA accepts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate small clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "masquerade (self-signed, local)")
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "masquerade local CA"), org])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "masquerade AI face swap signer"), org])
    usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "encipher_only", "decipher_only"), False,
    )
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days + 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder().subject_name(leaf_name).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    return key_pem, chain
