"""TLS and mTLS with a throwaway CA generated at test time."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.errors import InvalidArgument
from services.common.tests.echo import EchoClient, make_server
from services.common.tls import channel_credentials, server_credentials


def _issue(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, usage=None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("pki")
    ca = _issue("tistudio test CA", None)
    server = _issue("localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue("test client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    paths = {"ca": _write(directory, "ca", *ca)[0]}
    paths["server_cert"], paths["server_key"] = _write(directory, "server", *server)
    paths["client_cert"], paths["client_key"] = _write(directory, "client", *client)
    return paths


def _call(address: str, credentials: grpc.ChannelCredentials | None) -> bytes:
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        return EchoClient(channel).echo(b"hello", timeout=5)


def test_tls_handshake_with_the_ca(pki):
    server = make_server(tls_cert=pki["server_cert"], tls_key=pki["server_key"])
    try:
        assert _call(server.address, channel_credentials(pki["ca"])) == b"hello"
        with pytest.raises(grpc.RpcError) as err:
            _call(server.address, None)  # plaintext client
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_mtls_requires_a_client_certificate(pki):
    server = make_server(tls_cert=pki["server_cert"], tls_key=pki["server_key"], tls_client_ca=pki["ca"])
    try:
        with pytest.raises(grpc.RpcError) as err:
            _call(server.address, channel_credentials(pki["ca"]))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        mtls = channel_credentials(pki["ca"], pki["client_cert"], pki["client_key"])
        assert _call(server.address, mtls) == b"hello"
    finally:
        server.stop()


def test_unreadable_files_are_invalid_argument(pki, tmp_path):
    with pytest.raises(InvalidArgument, match="TISTUDIO_TLS_CERT: cannot read /nonexistent/server.crt"):
        server_credentials("/nonexistent/server.crt", pki["server_key"])
    with pytest.raises(InvalidArgument, match="TISTUDIO_TLS_CLIENT_CA"):
        server_credentials(pki["server_cert"], pki["server_key"], str(tmp_path / "missing-ca.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(InvalidArgument, match="not a PEM file"):
        channel_credentials(str(garbage))
    with pytest.raises(InvalidArgument, match="both a certificate and its key"):
        channel_credentials(pki["ca"], pki["client_cert"])
    with pytest.raises(InvalidArgument, match="TISTUDIO_TLS_KEY"):
        make_server(tls_cert=pki["server_cert"], tls_key=str(tmp_path / "missing.key"))
