"""``/admin``: the operator page, and the JSON it polls.

Served only when NOTIFIER_ADMIN_PASSWORD is set, behind HTTP Basic (user ``admin``): a
credential a browser asks for by itself, compared in constant time, with failures counted
per address as for API credentials (the same settings, a budget of its own, shared by every
web process). The page (templates/admin.html) polls
``/admin/api/state`` every two seconds: every process on the board (notifier/board.py),
the fanout queues and their lag, dead letters, recent warnings and errors; and
``/admin/api/users/{user}`` for the per-user inspector. Acting on dead letters is a POST
that must carry ``X-Notifier-Admin: 1``: a browser sends Basic credentials with any
cross-site form, but no cross-site page can add that header without a CORS preflight,
which notifier refuses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import time
from typing import Any

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.errors import InvalidInput, NotFound
from notifier.fanout import deadletters
from notifier.fanout.actors import FanoutActors
from notifier.fanout.observe import recent_lag
from notifier.fanout.queues import queue_stats
from notifier.feedgroups import FeedKind
from notifier.feeds import AggregatedFeed, FlatFeed, NotificationFeed
from notifier.model import check_user_id
from notifier.web.errors import error_response
from notifier.web.ratelimit import RateLimited
from notifier.web.reporter import WebReporter
from notifier.web.routing import json_response
from notifier.web.services import Services
from notifier.web.static import STATIC_PATH, TEMPLATES_DIR

ADMIN_USER = "admin"
#: The header a dead-letter action must carry (see the module docstring).
ACTION_HEADER = "x-notifier-admin"
#: Items of each feed the inspector shows.
INSPECT_ITEMS = 10
#: Dead letters listed on the page (the CLI lists them all).
LIST_DEAD = 100


class _Ids(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]


def admin_routes(services: Services, reporter: WebReporter) -> list[BaseRoute]:
    """The page and its API, or nothing when no admin password is configured."""
    password = services.settings.admin_password
    if password is None:
        return []
    expected = f"{ADMIN_USER}:{password}".encode()
    failures = services.limits.admin_failures
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    actors = services.fanout.dispatcher
    fanout = services.fanout.settings
    queues = {"high": fanout.high_queue, "low": fanout.low_queue}

    async def denied(request: Request) -> Response | None:
        """None when the request carries the admin credential, else the response."""
        address = request.client.host if request.client else "-"
        try:
            await failures.check(address)
        except RateLimited as exc:
            response = error_response(429, "rate_limited", str(exc))
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            presented = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            presented = b""
        if scheme.lower() == "basic" and hmac.compare_digest(presented, expected):
            return None
        await failures.spend(address)
        response = error_response(401, "unauthorized", "the operator page needs the admin "
                                  "credential (user admin, NOTIFIER_ADMIN_PASSWORD)",
                                  "Authorization")  # fmt: skip
        response.headers["WWW-Authenticate"] = 'Basic realm="notifier admin", charset="UTF-8"'
        return response

    def action_refused(request: Request) -> Response | None:
        if request.headers.get(ACTION_HEADER) != "1":
            return error_response(403, "forbidden", f"send the {ACTION_HEADER}: 1 header",
                                  ACTION_HEADER)  # fmt: skip
        return None

    async def page(request: Request) -> Response:
        if (refused := await denied(request)) is not None:
            return refused
        html = env.get_template("admin.html").render(static=STATIC_PATH, shared=reporter.shared)
        response = HTMLResponse(html)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
        )
        return response

    async def state(request: Request) -> Response:
        if (refused := await denied(request)) is not None:
            return refused
        processes, errors = await asyncio.gather(reporter.processes(), reporter.errors())
        queue_rows: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        broker_error = None
        try:
            broker = getattr(actors, "broker", None)
            stats = [] if broker is None else await asyncio.to_thread(queue_stats, broker, queues)
            queue_rows = [dataclasses.asdict(s) for s in stats]
            if isinstance(actors, FanoutActors):
                letters = await asyncio.to_thread(deadletters.find, actors)
                dead = [_letter(d) for d in letters[:LIST_DEAD]]
        except Exception as exc:  # the page still shows what it has; the broker is named
            broker_error = f"{type(exc).__name__}: {exc}"
        workers = [p for p in processes if p.get("kind") == "worker"]
        return json_response({
            "now": time.time(),
            "shared": reporter.shared,
            "processes": processes,
            "queues": queue_rows,
            "lag": _lag(workers),
            "dead_letters": dead,
            "dead_total": sum(int(q["dead"]) for q in queue_rows),
            "errors": errors,
            "broker_error": broker_error,
        })  # fmt: skip

    async def user(request: Request) -> Response:
        if (refused := await denied(request)) is not None:
            return refused
        name = request.path_params["user"]
        try:
            check_user_id(name, "user")
        except InvalidInput as exc:
            return error_response(422, "invalid", exc.message, "user")
        await reporter.watch(name)
        feeds: dict[str, Any] = {}
        for group in services.notifier.config.feeds.groups.values():
            feed = services.notifier.feed(group.name, name)
            entry: dict[str, Any] = {"kind": str(group.kind)}
            if isinstance(feed, NotificationFeed):
                entry["counts"] = msgspec.to_builtins(await feed.counts())
            if isinstance(feed, FlatFeed | AggregatedFeed):
                entry["items"] = msgspec.to_builtins(await feed.read(INSPECT_ITEMS))
            feeds[group.name] = entry
        return json_response({
            "user": name,
            "feeds": feeds,
            "connections": await reporter.connections(name),
            "flat": [g.name for g in services.notifier.config.feeds.groups.values()
                     if g.kind is FeedKind.FLAT],
        })  # fmt: skip

    async def act(request: Request) -> Response:
        if (refused := await denied(request) or action_refused(request)) is not None:
            return refused
        if not isinstance(actors, FanoutActors):
            raise NotFound("no fanout broker in this process", field="action")
        try:
            body = msgspec.json.decode(await request.body(), type=_Ids)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return error_response(422, "invalid", f"body: {exc}", "ids")
        if not body.ids:
            return error_response(422, "invalid", "ids: name at least one dead letter", "ids")
        action = request.path_params["action"]
        if action == "requeue":
            done = await asyncio.to_thread(deadletters.requeue, actors, body.ids)
        elif action == "discard":
            done = await asyncio.to_thread(deadletters.discard, actors, body.ids)
        else:
            return error_response(404, "not_found", f"no action {action!r}", "action")
        return json_response({"action": action, "count": len(done), "ids": [d.id for d in done]})

    return [
        Route("/admin", page, methods=["GET"]),
        Route("/admin/api/state", state, methods=["GET"]),
        Route("/admin/api/users/{user}", user, methods=["GET"]),
        Route("/admin/api/deadletters/{action}", act, methods=["POST"]),
    ]


def _letter(letter: deadletters.DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "queue": letter.queue,
        "job": letter.job,
        "dead_at": letter.dead_at,
        "retries": letter.retries,
        "reason": letter.reason,
        "op": letter.op,
        "actor": letter.actor,
        "activity_ids": list(letter.activity_ids),
        "users": letter.users,
        "can_requeue": letter.message is not None,
    }


def _lag(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Fanout lag over the workers' last minute: the worst, and jobs counted."""
    worst = max((float(w.get("lag_max_60s") or 0.0) for w in workers), default=0.0)
    jobs = sum(int(w.get("jobs_60s") or 0) for w in workers)
    return {"max_60s": worst, "jobs_60s": jobs, "workers": len(workers), "local": recent_lag()}
