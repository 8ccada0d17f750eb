"""The dashboard's routes: overview, stream pages, dead letters (list, show, replay, purge),
the event catalog, ``/metrics`` for the stream and group gauges, and HTML fragments for the
live refresh. Every page is rendered server-side (Jinja2, autoescaped); the only script swaps a
fragment in place every ``refresh_s``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from schemas import REGISTRY, UnknownEventTypeError, example_payload, field_rows, json_schema

from .. import ops
from .._bus import EventBus
from .._redact import redact
from ._gauges import render_status_metrics
from ._security import COOKIE, WriteGuard
from ._settings import DashboardSettings

__all__ = ["dashboard_app"]

_TEMPLATES = Path(__file__).with_name("templates")


def _pretty(value: Any) -> str:
    return json.dumps(redact(value), indent=2, ensure_ascii=False, sort_keys=False)


def _age(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def dashboard_app(bus: EventBus, settings: DashboardSettings | None = None) -> Starlette:
    """The ASGI app of the dashboard on an open ``bus``."""
    cfg = settings or DashboardSettings()
    guard = WriteGuard(cfg.write_token)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True)
    templates = Jinja2Templates(env=env)
    templates.env.filters["age"] = _age
    templates.env.filters["pretty"] = _pretty
    templates.env.globals["WORKFLOW_STREAM"] = bus.keys.workflow_stream  # (tagged with BUS_KEY_HASHTAG)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context |= {
            "request": request,
            "refresh_s": cfg.refresh_s,
            "writable": guard.enabled,
            "logged_in": guard.logged_in(request),
            "csrf": guard.csrf_token() if guard.logged_in(request) else "",
            "notice": request.query_params.get("done", ""),
        }
        response: HTMLResponse = templates.TemplateResponse(request, name, context, status_code=status_code)
        return response

    async def overview_context(request: Request) -> dict[str, Any]:
        show_all = request.query_params.get("all") == "1"
        report = await ops.status(bus, include_empty=show_all)
        return {"report": report, "show_all": show_all}

    async def overview(request: Request) -> Response:
        return page(request, "overview.html.j2", **await overview_context(request))

    async def overview_fragment(request: Request) -> Response:
        return page(request, "_overview_table.html.j2", **await overview_context(request))

    async def stream_context(request: Request) -> dict[str, Any]:
        key = request.query_params.get("key", "")
        report = await ops.status(bus, include_empty=True)
        row = next((r for r in report.rows if r.stream.stream == key), None)
        if row is None:
            raise HTTPException(404, f"no stream {key!r} under this bus's prefix")
        entries = []
        async for entry in ops.tail(bus, key, count=cfg.recent_entries):
            entries.append(entry.to_json())
        entries.reverse()  # newest first
        return {"row": row, "entries": entries, "server_time_ms": report.server_time_ms}

    async def stream_page(request: Request) -> Response:
        return page(request, "stream.html.j2", **await stream_context(request))

    async def stream_fragment(request: Request) -> Response:
        return page(request, "_stream_body.html.j2", **await stream_context(request))

    async def dead_letters(request: Request) -> Response:
        stream = request.query_params.get("stream") or None
        listing = await ops.list_dead_letters(bus, stream=stream, limit_per_stream=cfg.dead_letters_per_stream)
        return page(request, "dead_letters.html.j2", listing=listing, stream=stream or "")

    async def find_one(stream: str, entry_id: str) -> ops.DeadLetterView:
        try:
            found = await ops.find_dead_letters(bus, [entry_id], stream=stream)
        except (ops.DeadLetterNotFoundError, ops.InvalidEntryIdError, ops.StreamNotFoundError) as exc:
            raise HTTPException(404, str(exc)) from None
        return found[0]

    async def dead_letter(request: Request) -> Response:
        q = request.query_params
        view = await find_one(q.get("stream", ""), q.get("id", ""))
        return page(request, "dead_letter.html.j2", dl=view, doc=view.to_json())

    async def selected(stream: str, entry_id: str) -> list[ops.DeadLetterView]:
        if entry_id == "all":
            return await ops.read_dead_letter_stream(bus, stream)
        return [await find_one(stream, entry_id)]

    async def confirm(request: Request) -> Response:
        q = request.query_params
        action, stream, entry_id = q.get("action", ""), q.get("stream", ""), q.get("id", "")
        if action not in ("replay", "purge"):
            raise HTTPException(404, "no such action")
        if not guard.logged_in(request):
            raise HTTPException(403, "log in with the write token first")
        views = await selected(stream, entry_id)
        return page(request, "confirm.html.j2", action=action, stream=stream, entry_id=entry_id, count=len(views))

    async def write_form(request: Request) -> FormData:
        form = await request.form()
        if not guard.may_write(request, str(form.get("csrf", ""))):
            raise HTTPException(403, "writes need the write token (log in) and this dashboard's own form")
        return form

    async def replay(request: Request) -> Response:
        form = await write_form(request)
        stream, entry_id = str(form.get("stream", "")), str(form.get("id", ""))
        outcomes = await ops.replay_dead_letters(bus, await selected(stream, entry_id))
        replayed = sum(1 for o in outcomes if o.status == "replayed")
        done = f"replayed {replayed} of {len(outcomes)} dead letters from {stream}"
        return RedirectResponse("/dead-letters?" + urlencode({"stream": stream, "done": done}), status_code=303)

    async def purge(request: Request) -> Response:
        form = await write_form(request)
        stream, entry_id = str(form.get("stream", "")), str(form.get("id", ""))
        deleted = await ops.purge_dead_letters(bus, await selected(stream, entry_id))
        done = f"purged {deleted} dead letters from {stream}"
        return RedirectResponse("/dead-letters?" + urlencode({"stream": stream, "done": done}), status_code=303)

    async def login(request: Request) -> Response:
        if not guard.enabled:
            raise HTTPException(403, "this dashboard is read-only (started without a write token)")
        if request.method == "GET":
            return page(request, "login.html.j2")
        form = await request.form()
        if not guard.check_token(str(form.get("token", ""))):
            return page(request, "login.html.j2", status_code=403, error="wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, guard.session_value(), httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def catalog(request: Request) -> Response:
        by_category: dict[str, list[Any]] = {}
        for spec in REGISTRY:
            by_category.setdefault(spec.category, []).append(spec)
        return page(request, "catalog.html.j2", by_category=dict(sorted(by_category.items())))

    async def event_type(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            spec = REGISTRY.resolve(name)
        except (UnknownEventTypeError, KeyError) as exc:
            raise HTTPException(404, str(exc)) from None
        shapes = [(kind, field_rows(cls)) for kind, cls in spec.variants]
        return page(
            request,
            "event_type.html.j2",
            spec=spec,
            shapes=shapes,
            schema=json.dumps(json_schema(spec.event_type, shape="bus"), indent=2),
            example=json.dumps(example_payload(spec.event_type), indent=2),
        )

    async def metrics(request: Request) -> Response:
        report = await ops.status(bus, include_empty=True)
        return Response(render_status_metrics(report), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return page(request, "error.html.j2", status_code=exc.status_code, message=exc.detail)

    return Starlette(
        routes=[
            Route("/", overview),
            Route("/fragments/overview", overview_fragment),
            Route("/stream", stream_page),
            Route("/fragments/stream", stream_fragment),
            Route("/dead-letters", dead_letters),
            Route("/dead-letter", dead_letter),
            Route("/confirm", confirm),
            Route("/actions/replay", replay, methods=["POST"]),
            Route("/actions/purge", purge, methods=["POST"]),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/catalog", catalog),
            Route("/catalog/{name}", event_type),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
        ],
        exception_handlers={HTTPException: error},
    )
