"""Fixtures of the security tests: certificates made by trustme, and private redis-servers with
TLS or ACL users (never the shared 6379: its ACLs and config stay untouched)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
import trustme


@dataclass(frozen=True)
class Certs:
    """PEM files: our CA, a server certificate for localhost/127.0.0.1, one for another host,
    a client certificate, and a CA nobody used."""

    ca: str
    server_cert: str
    server_key: str
    other_host_cert: str
    other_host_key: str
    client_cert: str
    client_key: str
    wrong_ca: str


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA made for the test run (trustme) and the certificates the TLS tests need."""
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    server.private_key_pem.write_to_path(str(d / "server.key"))
    other = ca.issue_cert("redis.other.example")
    other.cert_chain_pems[0].write_to_path(str(d / "other.pem"))
    other.private_key_pem.write_to_path(str(d / "other.key"))
    client = ca.issue_cert("psa-event-bus-client")
    client.cert_chain_pems[0].write_to_path(str(d / "client.pem"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    trustme.CA().cert_pem.write_to_path(str(d / "wrong-ca.pem"))
    return Certs(
        ca=str(d / "ca.pem"),
        server_cert=str(d / "server.pem"),
        server_key=str(d / "server.key"),
        other_host_cert=str(d / "other.pem"),
        other_host_key=str(d / "other.key"),
        client_cert=str(d / "client.pem"),
        client_key=str(d / "client.key"),
        wrong_ca=str(d / "wrong-ca.pem"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsServer:
    """A private redis-server with a TLS port (``tls_port``) and a plaintext admin port (``port``)."""

    port: int
    tls_port: int


@pytest.fixture
def tls_redis(redis_process: Callable[..., Any], certs: Certs) -> Callable[..., TlsServer]:
    """Factory: ``tls_redis(auth_clients="yes", other_host=False)`` starts a TLS redis-server."""

    def make(*, auth_clients: str = "yes", other_host: bool = False) -> TlsServer:
        tls_port = _free_port()
        cert, key = (
            (certs.other_host_cert, certs.other_host_key) if other_host else (certs.server_cert, certs.server_key)
        )
        proc = redis_process(
            appendonly=False,
            extra=(
                "--tls-port",
                str(tls_port),
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                certs.ca,
                "--tls-auth-clients",
                auth_clients,
            ),
        )
        return TlsServer(port=proc.port, tls_port=tls_port)

    return make


def command(client: aioredis.Redis, *args: Any) -> Awaitable[Any]:
    """``client.execute_command(*args)`` (redis-py leaves it untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class AclServer:
    """A private redis-server whose ``default`` user stays the admin (plaintext, no password)."""

    port: int
    admin: aioredis.Redis

    def url(self, username: str, password: str) -> str:
        """``redis://user:password@127.0.0.1:port/0``."""
        return f"redis://{username}:{password}@127.0.0.1:{self.port}/0"

    async def run(self, *args: Any) -> Any:
        """An admin command (``ACL SETUSER ...``, ``ACL LOG RESET``)."""
        return await command(self.admin, *args)

    async def acl_log(self, username: str | None = None) -> list[dict[str, Any]]:
        """ACL LOG entries (decoded), optionally of one user."""
        raw: Any = await command(self.admin, "ACL", "LOG", "128")
        out: list[dict[str, Any]] = []
        for entry in raw:
            item = {
                (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in entry.items()
            }
            if username is None or item.get("username") == username:
                out.append(item)
        return out


@pytest.fixture
async def acl_redis(redis_process: Callable[..., Any]) -> AsyncIterator[AclServer]:
    """A private redis-server for ACL users (DEBUG enabled, so only the ACL can refuse it)."""
    proc = redis_process(appendonly=False, extra=("--enable-debug-command", "yes"))
    admin = aioredis.Redis(port=proc.port, socket_timeout=5)
    try:
        yield AclServer(port=proc.port, admin=admin)
    finally:
        await admin.aclose()
