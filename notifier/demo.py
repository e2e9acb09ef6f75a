"""``notifier demo``: the whole product in one process, on the memory backend.

It starts the real server (``create_app`` under uvicorn, in-process fanout and realtime bus),
with a random secret and API key made at start (never stored), seeds a few users, follows
and notifications, and adds the demo page (notifier/web/demo_routes.py) that shows two users'
bells side by side. Only this command mounts the demo routes; ``notifier serve`` never does.
Once it listens it says where the page is, the API key, and a ``curl`` line that makes a
notification appear live in one of the page's bells (``curl_line``).
"""

from __future__ import annotations

import json
import secrets
import shlex
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import uvicorn
from starlette.applications import Starlette

from notifier.categories import Categories, Category
from notifier.config import Config
from notifier.model import Activity
from notifier.web.app import create_app
from notifier.web.services import Services
from notifier.web.settings import ServerSettings, server_options
from notifier.web.wiring import build_services

DEMO_CATEGORIES = Categories(
    [
        Category("social", verbs=("like", "comment", "follow")),
        Category("mentions", verbs=("mention",)),
        Category("account", critical=True),
    ]
)
"""The demo's categories when its configuration declares none: the page's bells show a tab
for each of the first two, and "account" shows as a category that cannot be muted."""

USERS = ("ana", "bo", "cy", "dee", "eve")
"""The demo's users; the page shows the first two side by side."""
SHOWN = USERS[:2]
COLOURS = {"ana": "#d9480f", "bo": "#1c7ed6", "cy": "#2b8a3e", "dee": "#ae3ec9", "eve": "#e67700"}


def avatar(user: str) -> str:
    """A small SVG avatar (the user's initial on a colour) as a data URI: no network."""
    colour = COLOURS.get(user, "#495057")
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 40 40'>"
        f"<circle cx='20' cy='20' r='20' fill='{colour}'/>"
        "<text x='20' y='26' font-family='sans-serif' font-size='18' fill='white' "
        f"text-anchor='middle'>{user[:1].upper()}</text></svg>"
    )
    return "data:image/svg+xml," + quote(svg, safe="/:=' ")


@dataclass(frozen=True)
class Act:
    """What one demo button does: ``actor`` does ``verb`` to ``user``."""

    actor: str
    verb: str
    user: str


def activity_for(services: Services, act: Act, time: datetime | None = None) -> Activity:
    """The activity behind a demo action, addressed to ``user``'s notification feed.

    ``extra`` carries what the widget shows: the URL an item opens, the actor's avatar and a
    title for the target, one per language of the demo page ("your photo", "votre photo"),
    as an app would send them.
    """
    photo = f"photo:{act.user}-beach"
    your_photo = {"en": "your photo", "fr": "votre photo"}
    targets = {
        "like": (photo, your_photo, f"#/photos/{act.user}-beach"),
        "comment": (photo, your_photo, f"#/photos/{act.user}-beach/comments"),
        "follow": (f"user:{act.user}", {"en": "you", "fr": "vous"}, f"#/people/{act.actor}"),
        "mention": (
            f"post:{act.actor}-1",
            {"en": "you in a post", "fr": "vous dans une publication"},
            f"#/posts/{act.actor}-1",
        ),
    }
    target, title, url = targets[act.verb]
    return services.notifier.activity(
        actor=act.actor,
        verb=act.verb,
        object=f"{act.verb}:{act.actor}:{secrets.token_hex(4)}",
        target=target,
        time=time,
        to=[f"notification:{act.user}"],
        extra={"url": url, "avatar": avatar(act.actor), "title": title},
    )


SEED: Sequence[tuple[int, Act]] = (
    (60 * 26, Act("eve", "follow", "bo")),
    (60 * 3, Act("cy", "mention", "bo")),
    (45, Act("ana", "like", "bo")),
    (40, Act("cy", "like", "bo")),
    (38, Act("dee", "like", "bo")),
    (12, Act("ana", "comment", "bo")),
    (60 * 50, Act("dee", "follow", "ana")),
    (90, Act("bo", "like", "ana")),
    (30, Act("cy", "comment", "ana")),
)
"""(minutes ago, action): yesterday's follow, an aggregated "ana and 2 others liked"..."""


async def seed(services: Services, now: datetime | None = None) -> None:
    """Follows between the demo users and a few notifications from the last two days."""
    for user in USERS:
        for target in USERS:
            if user != target and (user in SHOWN or target in SHOWN):
                await services.fanout.follow(user, target)
    now = now or datetime.now(UTC)
    activities = [activity_for(services, act, now - timedelta(minutes=ago)) for ago, act in SEED]
    await services.fanout.add_activities(activities)


def curl_line(url: str, api_key: str, user: str = SHOWN[1]) -> str:
    """A shell command that adds, through the server API, an activity for ``user``'s
    notification feed: eve mentions them in a post (a group of its own, so it shows at the
    top of their bell). ``curl --json`` because the API refuses bodies that are not JSON."""
    body = {
        "actor": "eve",
        "verb": "mention",
        "object": "mention:eve:curl",
        "target": "post:eve-1",
        "to": [f"notification:{user}"],
        "extra": {
            "url": "#/posts/eve-1",
            "title": {"en": "you in a post", "fr": "vous dans une publication"},
        },
    }
    endpoint = f"{url.rstrip('/')}/v1/activities"
    auth = f"Authorization: Bearer {api_key}"
    return shlex.join(["curl", "--json", json.dumps(body), "-H", auth, endpoint])


def demo_settings(host: str, port: int) -> ServerSettings:
    """Settings with a fresh random secret and API key, and the demo's own origin allowed."""
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    origins = ",".join(sorted(f"http://{name}:{port}" for name in names))
    return ServerSettings.load(
        env={
            "NOTIFIER_SECRET": secrets.token_urlsafe(32),
            "NOTIFIER_API_KEYS": f"demo-{secrets.token_urlsafe(24)}",
            "NOTIFIER_ALLOWED_ORIGINS": origins,
            "NOTIFIER_HOST": host,
            "NOTIFIER_PORT": str(port),
        }
    )


def build_demo(config: Config, settings: ServerSettings) -> tuple[Starlette, Services]:
    """The demo app: the real API and widget files, plus the demo page and its routes."""
    from notifier.web.demo_routes import demo_routes

    memory = Config(
        feeds=config.feeds,
        verbs=config.verbs,
        limits=config.limits,
        categories=config.categories or DEMO_CATEGORIES,
    )
    services = build_services(memory, settings)
    return create_app(services, extra_routes=demo_routes(services)), services


async def run_demo(
    config: Config,
    host: str,
    port: int,
    ready: Callable[[str, str], None] = lambda url, api_key: None,
) -> None:
    """Seed, then serve until interrupted (uvicorn handles Ctrl-C); ``ready`` gets the page's
    URL and the API key once the server listens."""
    settings = demo_settings(host, port)
    app, services = build_demo(config, settings)
    await seed(services)
    server = _AnnouncingServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            **server_options(settings),
        ),
        lambda: ready(f"http://{host}:{port}/", settings.api_keys[0]),
    )
    await server.serve()


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that says when it listens (not before: the URL must work)."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_listening()
