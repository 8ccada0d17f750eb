"""A private 3-master Redis Cluster for the cluster tests: redis-server processes on free ports
(each port and port+10000, the cluster bus, free), joined with ``redis-cli --cluster create``.
Only the processes started here are stopped, by their pid."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

__all__ = ["ClusterServers", "free_cluster_ports"]


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(n: int) -> list[int]:
    """``n`` ports P with P and P+10000 free (the cluster bus port)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and port not in ports and _is_free(port + 10000):
            ports.append(port)
    return ports


class ClusterServers:
    """Three masters, no replicas; :meth:`start` returns once every node says ``cluster_state:ok``."""

    def __init__(self, workdir: Path, n: int = 3) -> None:
        self.workdir = workdir
        self.n = n
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(self.nodes)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)

    def start(self, timeout_s: float = 60.0) -> None:
        for attempt in range(3):
            self.ports = free_cluster_ports(self.n)
            try:
                self._start_nodes()
                self._create(timeout_s)
                return
            except (RuntimeError, subprocess.CalledProcessError):
                self.stop()
                if attempt == 2:
                    raise

    def _start_nodes(self) -> None:
        server = shutil.which("redis-server")
        assert server is not None, "redis-server is not installed"
        for port in self.ports:
            d = self.workdir / str(port)
            d.mkdir(parents=True, exist_ok=True)
            log = open(d / "log", "wb")  # noqa: SIM115 - the child owns it
            self.procs.append(
                subprocess.Popen(
                    [server, "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                     "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--daemonize", "no", "--dir", str(d), "--cluster-node-timeout", "5000"],
                    stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        deadline = time.monotonic() + 20
        for port, proc in zip(self.ports, self.procs, strict=True):
            while True:
                try:
                    pid = int(self.client(port).info("server")["process_id"])
                except redis.ConnectionError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                        raise RuntimeError(f"redis-server on {port} did not start") from None
                    time.sleep(0.05)
                    continue
                # Another process (a parallel test session) may have taken the port between the
                # check and our server's bind: then ours exited and theirs answers. Never use it.
                if pid != proc.pid:
                    raise RuntimeError(f"port {port} is served by another redis-server (pid {pid})")
                break

    def _create(self, timeout_s: float) -> None:
        subprocess.run(
            ["redis-cli", "--cluster", "create", *self.nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout_s,
        )  # fmt: skip
        self.wait_ok(timeout_s)

    def wait_ok(self, timeout_s: float = 60.0) -> None:
        """Until every node reports ``cluster_state:ok`` and agrees on all 16384 slots."""
        deadline = time.monotonic() + timeout_s
        while True:
            ok = True
            for port in self.ports:
                info = self.client(port).execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text or "cluster_slots_ok:16384" not in text:
                    ok = False
                    break
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def port_of_slot(self, slot: int) -> int:
        """The port of the master serving ``slot``."""
        for start, end, master, *_ in self.client(self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise LookupError(slot)

    def node_id(self, port: int) -> str:
        return str(self.client(port).execute_command("CLUSTER", "MYID").decode())

    def migrate_slot(self, slot: int, dest_port: int) -> int:
        """Move ``slot`` to ``dest_port`` with the CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE,
        SETSLOT NODE steps; how many keys moved."""
        src_port = self.port_of_slot(slot)
        if src_port == dest_port:
            return 0
        moved = self.begin_migration(slot, src_port, dest_port)
        self.finish_migration(slot, src_port, dest_port)
        return len(moved)

    def begin_migration(self, slot: int, src_port: int, dest_port: int) -> set[str]:
        """IMPORTING on the target, MIGRATING on the source, every key MIGRATEd: the source now
        answers ASK for the slot's keys. The keys moved: every key in the slot, which may hold keys
        of other tests too (the cluster lives for the session; a slot is shared by any key hashing
        to it), so callers check that theirs are among them, not how many there were."""
        src, dest = self.client(src_port), self.client(dest_port)
        dest.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src_port))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dest_port))
        moved: set[str] = set()
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                return moved
            src.execute_command("MIGRATE", "127.0.0.1", dest_port, "", 0, 10000, "KEYS", *keys)
            moved.update(k.decode() for k in keys)

    def finish_migration(self, slot: int, src_port: int, dest_port: int) -> None:
        """SETSLOT NODE on the target, the source, then the others: the slot is the target's (MOVED)."""
        dest_id = self.node_id(dest_port)
        for port in (dest_port, src_port, *(p for p in self.ports if p not in (src_port, dest_port))):
            self.client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dest_id)

    def stop(self) -> None:
        """Stop the servers started here (by pid), then wait for them."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs = []
