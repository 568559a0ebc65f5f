"""ops.tls: the lab's CA and server certificate."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from ops import tls

NAMES = ["ctl", "demo-ctl", "localhost", "127.0.0.1"]


def _quiet(_: str) -> None:
    pass


def test_keys_are_private_and_the_chain_verifies(tmp_path: Path) -> None:
    f = tls.ensure(tmp_path / "tls", NAMES, label="demo", log=_quiet)
    for key in (f.key, f.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    leaf = x509.load_pem_x509_certificate(f.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(f.ca_cert.read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert tls._names(leaf) == set(NAMES)


def test_second_run_keeps_everything(tmp_path: Path) -> None:
    f = tls.ensure(tmp_path, NAMES, label="demo", log=_quiet)
    before = {p: p.read_bytes() for p in (f.cert, f.key, f.ca_cert, f.ca_key)}
    logged: list[str] = []
    tls.ensure(tmp_path, NAMES, label="demo", log=logged.append)
    assert logged == []
    assert {p: p.read_bytes() for p in before} == before


def test_new_names_reissue_the_server_certificate_only(tmp_path: Path) -> None:
    f = tls.ensure(tmp_path, NAMES, label="demo", log=_quiet)
    ca = f.ca_cert.read_bytes()
    old = f.cert.read_bytes()
    tls.ensure(tmp_path, [*NAMES, "web"], label="demo", log=_quiet)
    assert f.ca_cert.read_bytes() == ca
    assert f.cert.read_bytes() != old
    assert "web" in tls._names(x509.load_pem_x509_certificate(f.cert.read_bytes()))


def test_a_remade_ca_reissues_the_server_certificate(tmp_path: Path) -> None:
    f = tls.ensure(tmp_path, NAMES, label="demo", log=_quiet)
    old = f.cert.read_bytes()
    f.ca_key.unlink()  # lost: a new CA with the same name is made
    tls.ensure(tmp_path, NAMES, label="demo", log=_quiet)
    assert f.cert.read_bytes() != old
    leaf = x509.load_pem_x509_certificate(f.cert.read_bytes())
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(f.ca_cert.read_bytes()))
