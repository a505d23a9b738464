"""A real redis-server that needs a password, and optionally speaks only TLS (``--port 0
--tls-port``) with a CA and server/client certificates made here; stopped by PID.

Used by the TLS/ACL and secrets tests. The default user's password is the admin password;
tests add ACL users with ``admin().acl_setuser(...)``.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.redis_server import free_port, server_args, spawn, stop_process, wait_pong

ADMIN_PASSWORD = "adm1n-S3cret-pw"


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certs(directory: Path) -> Certs:
    """A self-signed CA, and a server certificate for 127.0.0.1/localhost and a client
    certificate signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = _key()
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("celeriac test CA"))
        .issuer_name(_name("celeriac test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256()), key

    certs = Certs(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for (cert, key), cert_path, key_path in (
        (leaf("127.0.0.1", True), certs.server_cert, certs.server_key),
        (leaf("celeriac test client", False), certs.client_cert, certs.client_key),
    ):
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
    return certs


@dataclass
class SecureRedis:
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    certs: Certs | None

    @property
    def scheme(self) -> str:
        return "rediss" if self.certs else "redis"

    def url(self, db: int = 0, user: str = "", password: str = ADMIN_PASSWORD) -> str:
        """A URL with the credentials (and, over TLS, Celery's ssl_* query options)."""
        auth = f"{quote(user)}:{quote(password)}@" if password else ""
        query = ""
        if self.certs:
            query = (
                f"?ssl_cert_reqs=required&ssl_ca_certs={self.certs.ca}"
                f"&ssl_certfile={self.certs.client_cert}&ssl_keyfile={self.certs.client_key}"
            )
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}/{db}{query}"

    def admin(self, db: int = 0) -> redis.Redis:
        if self.certs is None:
            return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=ADMIN_PASSWORD)
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            password=ADMIN_PASSWORD,
            ssl=True,
            ssl_ca_certs=str(self.certs.ca),
            ssl_certfile=str(self.certs.client_cert),
            ssl_keyfile=str(self.certs.client_key),
        )

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_secure_redis(tls: bool) -> SecureRedis:
    """A redis-server whose default user needs ADMIN_PASSWORD; with *tls*, TLS only, client
    certificates required."""
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-redis-secure-"))
    port = free_port()
    certs = make_certs(workdir) if tls else None
    args = ["--loglevel", "warning", "--requirepass", ADMIN_PASSWORD]
    if certs is not None:
        args += [
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(certs.server_cert),
            "--tls-key-file",
            str(certs.server_key),
            "--tls-ca-cert-file",
            str(certs.ca),
            "--tls-auth-clients",
            "yes",
        ]
    process = spawn(server_args(port if certs is None else 0, workdir, args))
    server = SecureRedis(port, process, workdir, certs)
    try:
        wait_pong(server.admin(), process)
    except BaseException:
        server.stop()
        raise
    return server


__all__ = ["ADMIN_PASSWORD", "Certs", "SecureRedis", "make_certs", "start_secure_redis"]
