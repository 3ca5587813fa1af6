"""The signing key: created on first use with private permissions, reused, renewed, or the user's own."""

from __future__ import annotations

import stat
import sys

import pytest
from cryptography import x509

from masquerade.errors import UsageError
from masquerade.provenance import keys
from masquerade.provenance.keys import CERT_ENV, KEY_ENV, SigningIdentity, signing_identity

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_first_use_creates_a_private_key_file_and_reuses_it(home):
    first = signing_identity()
    path = home / "keys" / keys.KEY_FILE_NAME
    assert path.is_file()
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert first.alg == "es256" and first.origin == str(path)
    again = signing_identity()
    assert again.private_key_pem == first.private_key_pem and again.cert_chain_pem == first.cert_chain_pem
    assert [p.name for p in path.parent.iterdir()] == [keys.KEY_FILE_NAME]  # no temp files left


def test_the_chain_has_what_c2pa_requires_of_a_signer(home):
    leaf, ca = x509.load_pem_x509_certificates(signing_identity().cert_chain_pem)
    assert leaf.issuer == ca.subject and leaf.issuer != leaf.subject  # c2pa rejects self-signed leaves
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@posix_only
def test_loose_permissions_are_tightened(home):
    signing_identity()
    path = home / "keys" / keys.KEY_FILE_NAME
    path.chmod(0o644)
    signing_identity()
    assert _mode(path) == 0o600


def test_an_expired_certificate_is_renewed(home):
    folder = home / "keys"
    folder.mkdir(parents=True)
    key_pem, chain_pem = keys.create_key_and_chain(days=0)  # already expired (backdated 5 minutes)
    (folder / keys.KEY_FILE_NAME).write_bytes(key_pem + chain_pem)
    renewed = signing_identity()
    assert renewed.private_key_pem != key_pem
    assert renewed.leaf_not_after().year > 2026


def test_users_own_certificate_from_the_environment(home, tmp_path, monkeypatch):
    key_pem, chain_pem = keys.create_key_and_chain()
    (tmp_path / "me.key").write_bytes(key_pem)
    (tmp_path / "me.pem").write_bytes(chain_pem)
    monkeypatch.setenv(CERT_ENV, str(tmp_path / "me.pem"))
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "me.key"))
    identity = signing_identity()
    assert identity.private_key_pem == key_pem and "me.pem" in identity.origin
    assert not (home / "keys").exists()  # masquerade made no key of its own


def test_half_a_user_configuration_is_an_error(home, tmp_path, monkeypatch):
    monkeypatch.setenv(CERT_ENV, str(tmp_path / "me.pem"))
    with pytest.raises(UsageError, match=KEY_ENV):
        signing_identity()


def test_a_certificate_for_another_key_is_rejected():
    key_pem, _ = keys.create_key_and_chain()
    _, other_chain = keys.create_key_and_chain()
    with pytest.raises(UsageError, match="does not belong"):
        SigningIdentity.from_pem(key_pem, other_chain, "mine")
    with pytest.raises(UsageError, match="private key"):
        SigningIdentity.from_pem(b"garbage", other_chain, "mine")



def test_an_unusable_home_is_a_clear_output_error(tmp_path, monkeypatch):
    from masquerade.errors import OutputError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MASQUERADE_HOME", str(blocker / "home"))  # fails even for root
    monkeypatch.delenv(CERT_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(OutputError, match="MASQUERADE_HOME"):
        signing_identity()
