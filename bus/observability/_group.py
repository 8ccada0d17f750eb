"""The probes of a process group: one HTTP server answering for several daemon processes.

``bus run --processes N`` runs N children, each serving its own ``/metrics`` and ``/readyz`` on
127.0.0.1 (a free port each). The supervisor's server (:func:`group_app`) asks every child when
it is asked itself: ``/readyz`` is ready when every child is, ``/metrics`` is the children's
metrics merged (counters and histograms summed per label set; the ``ready`` gauge is the
minimum, other gauges the maximum) plus the supervisor's own ``bus_processes`` and
``bus_process_restarts_total``.

Why not ``prometheus_client``'s multiprocess mode: it works only for its own metric objects,
which write every update to a per-process mmap file; :class:`~bus.observability.BusMetrics` is a
collector of plain numbers rendered at scrape time (no I/O on the hot path), and the files of
restarted children would need cleaning. Asking the children keeps each child's server a real
probe of that child, and a child that does not answer shows as "not ready" by name.

The HTTP client is h11 (the protocol library uvicorn itself runs on) over an anyio socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

import anyio
import h11
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["GroupMember", "group_app", "http_get", "merge_metrics"]

#: ``() -> [(member name, 127.0.0.1 port or None when not serving), ...]``, asked at each request.
GroupMember = tuple[str, int | None]


async def http_get(host: str, port: int, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """``GET path`` over HTTP/1.1 (h11): the status code and the body."""
    conn = h11.Connection(h11.CLIENT)
    with anyio.fail_after(timeout_s):
        async with await anyio.connect_tcp(host, port) as stream:
            request = h11.Request(
                method="GET", target=path, headers=[("Host", f"{host}:{port}"), ("Connection", "close")]
            )
            await stream.send(conn.send(request) + conn.send(h11.EndOfMessage()))
            status, body = 0, bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        conn.receive_data(b"")
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, bytes(body)


class _Merged(Collector):
    """Families rebuilt from the members' samples (already merged)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge_metrics(texts: Sequence[str], extra: Iterable[Metric] = ()) -> bytes:
    """Prometheus texts of several processes as one: counters and histograms summed per label
    set; the ``*_ready`` gauges by minimum (the group is ready when all are), other gauges by maximum."""
    order: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in order:
                order[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            series = values[family.name]
            pick: Callable[[float, float], float] | None = None
            if family.type == "gauge":
                pick = min if family.name.endswith("_ready") else max
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = series.get(key)
                if old is None:
                    series[key] = sample.value
                else:
                    series[key] = pick(old, sample.value) if pick is not None else old + sample.value
    for name, metric in order.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([*order.values(), *extra]))
    return generate_latest(registry)


def group_app(
    members: Callable[[], Sequence[GroupMember]],
    *,
    draining: Callable[[], bool],
    restarts: Callable[[], int],
    check_timeout_s: float = 2.0,
) -> Starlette:
    """``/healthz``, ``/readyz`` and ``/metrics`` of a process group (see the module's docstring)."""

    async def ask_all(on_each: Callable[[str, int], Awaitable[Any]]) -> dict[str, Any]:
        results: dict[str, Any] = {}

        async def ask(name: str, port: int) -> None:
            try:
                results[name] = await on_each(name, port)
            except Exception as exc:
                results[name] = exc

        async with anyio.create_task_group() as tg:
            for name, port in members():
                if port is None:
                    results[name] = None
                else:
                    tg.start_soon(ask, name, port)
        return results

    async def readiness(name: str, port: int) -> str:
        status, body = await http_get("127.0.0.1", port, "/readyz", check_timeout_s)
        if status == 200:
            return "ok"
        checks = orjson.loads(body).get("checks", {}) if body.startswith(b"{") else {}
        problems = [f"{k}: {v}" for k, v in sorted(checks.items()) if v != "ok"]
        return "; ".join(problems) or f"/readyz answered {status}"

    async def readyz(request: Request) -> Response:
        answers = await ask_all(readiness)
        checks = {
            name: "not running (starting or restarting)"
            if value is None
            else f"no answer: {type(value).__name__} {value}".strip()
            if isinstance(value, Exception)
            else str(value)
            for name, value in sorted(answers.items())
        }
        if draining():
            checks["draining"] = "shutting down"
        ready = bool(checks) and all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    async def scrape(name: str, port: int) -> str:
        status, body = await http_get("127.0.0.1", port, "/metrics", check_timeout_s)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body.decode()

    async def metrics(request: Request) -> Response:
        answers = await ask_all(scrape)
        texts = [v for v in answers.values() if isinstance(v, str)]
        running = GaugeMetricFamily("bus_processes", "Consumer processes of this group answering /metrics.")
        running.add_metric([], float(len(texts)))
        restarted = CounterMetricFamily("bus_process_restarts", "Consumer processes restarted after a crash.")
        restarted.add_metric([], float(restarts()))
        return Response(merge_metrics(texts, (running, restarted)), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)])
