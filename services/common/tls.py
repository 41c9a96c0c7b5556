"""Optional TLS and mutual TLS from PEM files, for servers and for the clients that call them.

Server: certificate + key; add a client CA and every client must present a certificate signed by it (mTLS).
Client: the CA that signed the server's certificate; add a certificate + key for mTLS.
A missing or unreadable file is an `InvalidArgument` naming the setting and the path, raised at start-up
rather than as an opaque handshake failure on the first call.
"""

from __future__ import annotations

import grpc

from services.common.errors import InvalidArgument

__all__ = ["server_credentials", "channel_credentials", "CERT_ENV", "KEY_ENV", "CLIENT_CA_ENV"]

# The server-side settings' environment variables, named in error messages so an operator knows what to fix.
CERT_ENV = "TISTUDIO_TLS_CERT"
KEY_ENV = "TISTUDIO_TLS_KEY"
CLIENT_CA_ENV = "TISTUDIO_TLS_CLIENT_CA"


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidArgument(f"{what}: cannot read {path}: {exc.strerror or exc}", field=what) from exc
    if b"-----BEGIN " not in data:
        raise InvalidArgument(f"{what}: {path} is not a PEM file", field=what)
    return data


def server_credentials(cert_path: str, key_path: str, client_ca_path: str | None = None) -> grpc.ServerCredentials:
    """TLS server credentials; with `client_ca_path`, clients must present a certificate signed by that CA."""
    cert = _read_pem(cert_path, CERT_ENV)
    key = _read_pem(key_path, KEY_ENV)
    if client_ca_path is None:
        return grpc.ssl_server_credentials([(key, cert)])
    client_ca = _read_pem(client_ca_path, CLIENT_CA_ENV)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=True)


def channel_credentials(
    ca_path: str | None, cert_path: str | None = None, key_path: str | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials trusting `ca_path` (None: the system roots); cert + key present for mTLS."""
    if (cert_path is None) != (key_path is None):
        raise InvalidArgument("client TLS: give both a certificate and its key, or neither", field="cert_path")
    ca = _read_pem(ca_path, "ca_path") if ca_path is not None else None
    cert = _read_pem(cert_path, "cert_path") if cert_path is not None else None
    key = _read_pem(key_path, "key_path") if key_path is not None else None
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
