"""The demo page and the two routes behind it; mounted by ``notifier demo`` only.

``POST /demo/token/{user}`` plays the part of an app's backend: it hands the page a user
token for a demo user, as a real app would for its logged-in user after checking the
session. ``POST /demo/act`` makes one demo user act on another. Neither exists in
``notifier serve``: anyone who can reach them can read every demo user's notifications.
"""

from __future__ import annotations

from typing import Literal

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.demo import SHOWN, USERS, Act, activity_for, avatar
from notifier.errors import InvalidInput, NotFound
from notifier.web.services import Services
from notifier.web.static import STATIC_PATH, TEMPLATES_DIR

TOKEN_TTL = 900
"""Short on purpose: the widget asks for a fresh token while the page stays open."""


class ActIn(msgspec.Struct, forbid_unknown_fields=True):
    """``actor`` does ``verb`` to ``user`` (both demo users, not the same one)."""

    actor: str
    verb: Literal["like", "comment", "follow", "mention"]
    user: str


def demo_routes(services: Services, templates: jinja2.Environment | None = None) -> list[BaseRoute]:
    """The page at ``/``, plus ``/demo/token/{user}`` and ``/demo/act``."""
    env = templates or jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True
    )

    async def page(request: Request) -> Response:
        html = env.get_template("demo.html").render(
            shown=SHOWN,
            users=USERS,
            avatars={u: avatar(u) for u in USERS},
            static=STATIC_PATH,
        )
        return HTMLResponse(html)

    async def token(request: Request) -> Response:
        user = _demo_user(request.path_params["user"], "user")
        value, expires = services.tokens.issue(user, TOKEN_TTL, ["notification"])
        return JSONResponse({"token": value, "expires_at": expires})

    async def act(request: Request) -> Response:
        try:
            body = msgspec.json.decode(await request.body(), type=ActIn)
        except msgspec.ValidationError as exc:
            raise InvalidInput("body", str(exc)) from None
        except msgspec.DecodeError:
            raise InvalidInput("body", "not JSON") from None
        doing = Act(_demo_user(body.actor, "actor"), body.verb, _demo_user(body.user, "user"))
        if doing.actor == doing.user:
            raise InvalidInput("user", "a demo user does not notify themselves")
        if doing.verb == "follow":
            await services.fanout.follow(doing.actor, doing.user)
        activity = activity_for(services, doing)
        await services.fanout.add_activity(activity)
        return JSONResponse({"id": activity.id}, status_code=201)

    return [
        Route("/", page, methods=["GET"]),
        Route("/demo/token/{user}", token, methods=["POST"]),
        Route("/demo/act", act, methods=["POST"]),
    ]


def _demo_user(user: str, field: str) -> str:
    if user not in USERS:
        raise NotFound(f"{user!r} is not a demo user ({', '.join(USERS)})", field=field)
    return user
