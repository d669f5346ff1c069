"""The local API server's certificates and the kubeconfig that reaches it.

A fresh CA per runtime signs the server's certificate (for the loopback address it listens on) and the
administrator's client certificate (group ``system:masters``, as kind's admin kubeconfig has). Keys and the
kubeconfig are written 0600 in the state directory only.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: str, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


class Pki:
    """Paths of the CA, the server's pair and the administrator's pair under ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.ca_cert = os.path.join(directory, "ca.crt")
        self.server_cert = os.path.join(directory, "apiserver.crt")
        self.server_key = os.path.join(directory, "apiserver.key")
        self.admin_cert = os.path.join(directory, "admin.crt")
        self.admin_key = os.path.join(directory, "admin.key")

    @classmethod
    def create(cls, directory: str, address: str) -> "Pki":
        os.makedirs(directory, mode=0o700, exist_ok=True)
        pki = cls(directory)
        now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localpods-ca")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )

        def leaf(subject: x509.Name, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]) -> tuple[bytes, bytes]:
            key = _key()
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            )
            if names:
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            return _pem_cert(builder.sign(ca_key, hashes.SHA256())), _pem_key(key)

        server_names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(address)),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
        ]
        server_cert, server_key = leaf(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), ExtendedKeyUsageOID.SERVER_AUTH, server_names)
        admin_subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"), x509.NameAttribute(NameOID.COMMON_NAME, "localpods-admin")])
        admin_cert, admin_key = leaf(admin_subject, ExtendedKeyUsageOID.CLIENT_AUTH, [])
        _write(pki.ca_cert, _pem_cert(ca), 0o644)
        _write(pki.server_cert, server_cert, 0o644)
        _write(pki.server_key, server_key, 0o600)
        _write(pki.admin_cert, admin_cert, 0o644)
        _write(pki.admin_key, admin_key, 0o600)
        return pki

    def kubeconfig(self, server: str, namespace: str = "default", user: str = "localpods-admin", token: str | None = None) -> str:
        """A kubeconfig (YAML text) with one context ``localpods``: the admin's certificate, or ``token``."""

        def data(path: str) -> str:
            with open(path, "rb") as handle:
                return base64.b64encode(handle.read()).decode()

        credentials = {"token": token} if token else {"client-certificate-data": data(self.admin_cert), "client-key-data": data(self.admin_key)}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "localpods", "cluster": {"server": server, "certificate-authority-data": data(self.ca_cert)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "localpods", "context": {"cluster": "localpods", "user": user, "namespace": namespace}}],
            "current-context": "localpods",
            "preferences": {},
        }
        return yaml.safe_dump(config, sort_keys=False)

    def write_kubeconfig(self, path: str, server: str, **kwargs: str | None) -> str:
        _write(path, self.kubeconfig(server, **kwargs).encode(), 0o600)
        return path
