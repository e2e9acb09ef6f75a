"""Fuzz the websocket endpoint with generated client messages (hypothesis): whatever a client
sends, the server answers with frames of the protocol or closes with a documented code and a
reason, never 1011, never an abrupt drop, never an ERROR in its log; and it keeps serving.

The server runs in a thread of its own (memory backend, notifier's real uvicorn options) and
each example talks to it with the ``websockets`` library's synchronous client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from notifier.config import Config
from notifier.storage.memory import MemoryStorage
from notifier.web.app import create_app
from notifier.web.services import Services
from notifier.web.settings import server_options
from notifier.web.wiring import build_services
from tests.services import IN_CI, free_port
from tests.web.conftest import server_settings

pytestmark = pytest.mark.timeout(300)

#: Close codes docs/realtime.md gives for a client's mistakes (and 1000: the client left).
DOCUMENTED = {1000, 1009, 4400, 4401, 4403, 4404, 4408, 4409, 4429}


class Errors(logging.Handler):
    """ERROR records of every logger but the test client's, from every thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("websockets.client"):  # the test's own client
            self.records.append(f"{record.name}: {record.getMessage()}")


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.services: Services = build_services(
            Config(), server_settings(NOTIFIER_WS_AUTH_TIMEOUT="1"), storage=MemoryStorage()
        )
        config = uvicorn.Config(
            create_app(self.services), host="127.0.0.1", port=self.port, log_level="warning",
            lifespan="off", **server_options(self.services.settings),
        )  # fmt: skip
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def token(self, user: str = "bo", feeds: list[str] | None = None) -> str:
        return self.services.tokens.issue(user, 600, feeds)[0]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    made = Server()
    made.thread.start()
    while not made.uvicorn.started:
        assert made.thread.is_alive(), "the server did not start"
        threading.Event().wait(0.01)
    yield made
    made.uvicorn.should_exit = True
    made.thread.join(10)
    asyncio.run(made.services.fanout.close())


@pytest.fixture(scope="module")
def errors() -> Iterator[Errors]:
    handler = Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
positions = st.sampled_from(["", "0" * 26, "f" * 26, "0661675c1a09c02b41544e2392", "xyz"])
feeds = st.sampled_from(["notification", "timeline", "user", "nope", "", "x" * 70])


@st.composite
def messages(draw: st.DrawFn, token: str) -> str | bytes:
    kind = draw(st.sampled_from(["auth", "subscribe", "window", "unsubscribe", "ping", "junk",
                                 "text", "binary", "huge"]))  # fmt: skip
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "binary":
        return draw(st.binary(max_size=200))
    if kind == "huge":
        return json.dumps({"type": "ping", "pad": "x" * draw(st.integers(8000, 20000))})
    message: dict[str, Any] = {"type": kind}
    if kind == "auth":
        message["token"] = draw(st.sampled_from([token, "", "a.b.c", token[:-2]]))
    if kind in ("subscribe", "window", "unsubscribe"):
        message["feed"] = draw(feeds)
    if kind == "subscribe":
        if draw(st.booleans()):
            message["limit"] = draw(st.integers(-5, 150))
        if draw(st.booleans()):
            message["position"] = draw(positions)
        if draw(st.booleans()):
            message["oldest"] = draw(positions)
    if kind == "window":
        message["oldest"] = draw(positions)
    if draw(st.integers(0, 5)) == 0:
        message[draw(st.text(max_size=8))] = draw(json_values)
    if kind == "junk":
        message["type"] = draw(st.text(max_size=12))
    return json.dumps(message)


def frames_until_quiet(ws: ClientConnection) -> list[dict[str, Any]]:
    got = []
    while True:
        try:
            got.append(json.loads(ws.recv(timeout=0.3)))
        except TimeoutError:
            return got


@given(data=st.data())
@settings(max_examples=100, deadline=None, derandomize=IN_CI,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_any_message_sequence_gets_protocol_frames_or_a_documented_close(
    server: Server, errors: Errors, data: st.DataObject
) -> None:
    token = server.token()
    authenticate = data.draw(st.booleans(), label="authenticate first")
    sequence = data.draw(st.lists(messages(token), min_size=1, max_size=6), label="messages")
    with connect(server.url, open_timeout=10, close_timeout=5) as ws:
        try:
            if authenticate:
                ws.send(json.dumps({"type": "auth", "token": token}))
            for message in sequence:
                ws.send(message)
            for frame in frames_until_quiet(ws):
                assert isinstance(frame, dict) and "type" in frame
        except ConnectionClosed as closed:
            received = closed.rcvd
            assert received is not None, "dropped without a close frame"
            assert received.code in DOCUMENTED, (received.code, received.reason)
            assert received.code == 1000 or received.reason, "a close without a reason"
    assert not errors.records, errors.records


def test_the_server_still_serves_after_the_fuzz(server: Server, errors: Errors) -> None:
    with connect(server.url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": server.token("cy")}))
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "feed": "notification"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "sync"
    assert not errors.records, errors.records
