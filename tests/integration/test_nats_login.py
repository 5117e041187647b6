"""Logging in to NATS by token and over TLS with a client certificate, against real servers,
through the same settings every service uses."""

import asyncio
import contextlib
import datetime
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.common.jetstream import connect
from services.common.layout import is_ready
from services.common.nats_server import free_port, nats_server_command, wait_for_port
from services.common.settings import Settings
from services.projector.app import create_app as create_projector
from services.provision import provision_nats
from tests.stack import running

pytestmark = pytest.mark.nats

TOKEN = "nats-token-for-tests"


@contextlib.contextmanager
def nats_server(tmp_path: Path, *extra: str) -> Iterator[str]:
    """A JetStream server with ``extra`` command-line options; yields its port as a string."""
    port = free_port()
    process = subprocess.Popen(
        [*nats_server_command(store_dir=tmp_path / "store", port=port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield str(port)
    finally:
        process.terminate()
        process.wait(10)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def write_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("asyncgate test CA", ca_key, None, None, ca=True)
    files = {"ca": folder / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"asyncgate {role}", key, ca, ca_key, ca=False)
        files[f"{role}_cert"] = folder / f"{role}.pem"
        files[f"{role}_key"] = folder / f"{role}-key.pem"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


async def test_a_token_login_works_for_the_edge_and_the_faststream_services(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with nats_server(tmp_path, "--auth", TOKEN) as port:
        settings = Settings(nats_url=f"nats://127.0.0.1:{port}", nats_token=TOKEN)
        await provision_nats(settings)
        nc = await connect(settings, "test")
        try:
            async with running(create_projector(settings)):
                assert await is_ready(nc.jetstream())
        finally:
            await nc.close()

        # A refused login is retried (NATS may be starting), and said in the log every time.
        with pytest.raises((nats.errors.Error, OSError, TimeoutError)):
            await asyncio.wait_for(connect(settings.replace(nats_token="wrong"), "test"), 2)

    assert "Authorization Violation" in caplog.text


async def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    options = [
        "--tls",
        "--tlscert",
        str(pki["server_cert"]),
        "--tlskey",
        str(pki["server_key"]),
        "--tlsverify",
        "--tlscacert",
        str(pki["ca"]),
    ]
    with nats_server(tmp_path, *options) as port:
        settings = Settings(
            nats_url=f"tls://127.0.0.1:{port}",
            nats_tls_ca_file=pki["ca"],
            nats_tls_cert_file=pki["client_cert"],
            nats_tls_key_file=pki["client_key"],
        )
        await provision_nats(settings)
        nc = await connect(settings, "test")
        try:
            async with running(create_projector(settings)):
                assert await is_ready(nc.jetstream())
        finally:
            await nc.close()
