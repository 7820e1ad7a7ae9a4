"""Mutual TLS to Temporal's frontend: certificates generated with the other secrets.

Under the secrets folder's ``tls/`` (folder 0700, every file 0600)::

    ca.pem, ca-key.pem          the stack's own certificate authority (ECDSA P-256)
    server.pem, server-key.pem  the frontend: DNS localhost and temporal, IP 127.0.0.1
                                (serverAuth and clientAuth: Temporal's internode TLS)
    client.pem, client-key.pem  every treatyflow process, the Temporal UI, the CLI

The local stack's gate (``treatyflow.workers.gate``) and docker-compose's ``temporal``
service accept only clients that present a certificate issued by this CA.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from treatyflow.agency.files import replace_private
from treatyflow.keys import secrets_lock
from treatyflow.settings import Within

SERVER_NAMES = ("localhost", "temporal")
SERVER_IPS = ("127.0.0.1",)
VALID_FOR = timedelta(days=825)
CLIENT_NAME = "treatyflow"


@dataclass(frozen=True)
class TlsFiles:
    """Where one stack's certificates are."""

    folder: Path

    ca = Within("folder", "ca.pem")
    ca_key = Within("folder", "ca-key.pem")
    server_cert = Within("folder", "server.pem")
    server_key = Within("folder", "server-key.pem")
    client_cert = Within("folder", "client.pem")
    client_key = Within("folder", "client-key.pem")

    def complete(self) -> bool:
        return all(p.exists() for p in (self.ca, self.server_cert, self.server_key,
                                        self.client_cert, self.client_key))


def _write(path: Path, data: bytes) -> None:
    replace_private(path, data)  # a new 0600 file moved into place, never through a link


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
           ca_name: x509.Name | None, *, server: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(ca_name or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALID_FOR))
    if ca_name is None:  # the authority itself
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                False, False), True))
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [*(x509.DNSName(n) for n in SERVER_NAMES),
                 *(x509.IPAddress(ipaddress.ip_address(i)) for i in SERVER_IPS)]), False)
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage(usages), False))
    return builder.sign(ca_key, hashes.SHA256())


def load_or_create(folder: Path) -> TlsFiles:
    """The certificates in ``folder``; generates the CA, the server's and the client's
    if any is missing (folder 0700, files 0600). Existing ones are kept."""
    files = TlsFiles(folder)
    if files.complete():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    with secrets_lock(folder.parent):
        if files.complete():
            return files
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _issue("treatyflow stack CA", ca_key, ca_key, None, server=False)
        server_key = ec.generate_private_key(ec.SECP256R1())
        client_key = ec.generate_private_key(ec.SECP256R1())
        server = _issue("temporal", server_key, ca_key, ca.subject, server=True)
        client = _issue(CLIENT_NAME, client_key, ca_key, ca.subject, server=False)
        pem = serialization.Encoding.PEM
        for path, data in ((files.ca_key, _key_pem(ca_key)), (files.ca, ca.public_bytes(pem)),
                           (files.server_key, _key_pem(server_key)),
                           (files.server_cert, server.public_bytes(pem)),
                           (files.client_key, _key_pem(client_key)),
                           (files.client_cert, client.public_bytes(pem))):
            _write(path, data)
    return files


def client_tls(folder: Path, server_name: str):  # type: ignore[no-untyped-def]
    """The Temporal SDK's TLS settings: the stack's CA, the client's certificate."""
    from temporalio.service import TLSConfig

    files = TlsFiles(folder)
    try:
        return TLSConfig(server_root_ca_cert=files.ca.read_bytes(), domain=server_name,
                         client_cert=files.client_cert.read_bytes(),
                         client_private_key=files.client_key.read_bytes())
    except FileNotFoundError as err:
        raise RuntimeError(f"no TLS certificates for Temporal: {err.filename} is missing "
                           "(`make up` generates them)") from None


def server_context(folder: Path):  # type: ignore[no-untyped-def]
    """An ``ssl`` context for the frontend side: the server's certificate, clients must
    present one issued by the stack's CA, HTTP/2 (gRPC) and HTTP/1.1 offered."""
    import ssl

    files = TlsFiles(folder)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    ctx.load_cert_chain(str(files.server_cert), str(files.server_key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with contextlib.suppress(NotImplementedError):
        ctx.set_alpn_protocols(["h2"])
    return ctx


def cli_env(folder: Path, server_name: str) -> dict[str, str]:
    """The ``temporal`` CLI's variables for the same mutual TLS (paths, never keys)."""
    files = TlsFiles(folder)
    return {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(files.ca),
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(files.client_cert),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(files.client_key),
            "TEMPORAL_TLS_SERVER_NAME": server_name}
