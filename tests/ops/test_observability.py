"""Metrics, logs and request ids as an operator sees them: a real redis-server, a real
``notifier serve`` and a real ``notifier worker`` process, scraped and grepped from outside."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import ADMIN_PASSWORD, Stack
from tests.web.conftest import API_KEY, ORIGIN, SECRET


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition: (name, sorted labels) → value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(
    url: str, key: str | None = API_KEY
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def wait_until(check: object, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def follow(http: httpx.Client, user: str, target: str) -> None:
    response = http.post("/v1/follows", json={"user": user, "target": target})
    assert response.status_code in (200, 201), response.text


def test_metrics_count_what_happened_and_need_a_key(stack: Stack) -> None:
    web_metrics = f"{stack.base}/metrics"
    assert httpx.get(web_metrics).status_code == 401
    assert httpx.get(web_metrics, headers={"Authorization": "Bearer wrong-key-0123456789"}
                     ).status_code == 401  # fmt: skip
    before = scrape(web_metrics)
    http = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {API_KEY}"})
    followers = [f"f{n}" for n in range(25)]
    for user in followers:
        follow(http, user, "ana")
    for n in range(3):
        response = http.post("/v1/activities", json={"actor": "ana", "verb": "post",
                                                     "object": f"post:{n}"})  # fmt: skip
        assert response.status_code == 201, response.text
    assert http.get("/v1/feeds/nope/ana").status_code == 404

    after = scrape(web_metrics)
    posted = ("notifier_http_requests_total",
              (("method", "POST"), ("route", "/v1/activities"), ("status", "201")))  # fmt: skip
    assert after[posted] - before.get(posted, 0) == 3
    assert value(after, "notifier_activities_accepted_total") - value(
        before, "notifier_activities_accepted_total") == 3  # fmt: skip
    assert value(after, "notifier_http_requests_total", route="/v1/feeds/{group}/{user}",
                 method="GET", status="404") == 1  # fmt: skip
    assert value(after, "notifier_http_request_duration_seconds_count",
                 route="/v1/activities", method="POST") >= 3  # fmt: skip
    assert value(after, "notifier_queue_up") == 1

    # The worker fans each activity out to the 25 followers and says so.
    worker_metrics = f"http://127.0.0.1:{stack.worker_metrics}/metrics"
    wait_until(lambda: value(scrape(worker_metrics, None), "notifier_fanout_feed_writes_total")
               >= 3 * 25)  # fmt: skip
    worker = scrape(worker_metrics, None)
    assert value(worker, "notifier_fanout_jobs_total", kind="fanout", priority="high",
                 outcome="ok") + value(worker, "notifier_fanout_jobs_total", kind="fanout",
                 priority="low", outcome="ok") >= 3  # fmt: skip
    lag = sum(v for (name, _), v in worker.items() if name == "notifier_fanout_lag_seconds_count")
    assert lag >= 3
    assert value(worker, "notifier_queue_up") == 1


async def test_websocket_metrics_follow_connections(stack: Stack) -> None:
    web_metrics = f"{stack.base}/metrics"
    http = httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {API_KEY}"})
    token = (await http.post("/v1/tokens", json={"user": "bo"})).json()["token"]
    url = f"ws://127.0.0.1:{stack.port}/v1/realtime"
    sockets = []
    for _ in range(3):
        ws = await websockets.connect(url, origin=ORIGIN)  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        sockets.append(ws)
    found = scrape(web_metrics)
    assert value(found, "notifier_ws_connections_open") == 3
    assert value(found, "notifier_ws_users_connected") == 1
    assert value(found, "notifier_cache_entries", cache="tokens") == 1  # bo's, verified once
    # A refused origin is counted apart from connections.
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(url, origin="https://evil.example")  # type: ignore[arg-type]
    for ws in sockets:
        await ws.close()
    bad = await websockets.connect(url, origin=ORIGIN)  # type: ignore[arg-type]
    await bad.send(json.dumps({"type": "auth", "token": "not-a-token"}))
    with pytest.raises(websockets.ConnectionClosed):
        await bad.recv()

    def settled() -> bool:
        now = scrape(web_metrics)
        return value(now, "notifier_ws_connections_open") == 0 and value(
            now, "notifier_ws_connections_closed_total", code="4401") == 1  # fmt: skip

    wait_until(settled)
    found = scrape(web_metrics)
    assert value(found, "notifier_ws_connections_opened_total") == 4
    assert value(found, "notifier_ws_connections_closed_total", code="1000") == 3
    assert value(found, "notifier_ws_handshakes_refused_total", status="403") == 1
    await http.aclose()


def test_queue_depth_and_age_show_a_stalled_worker(stack: Stack) -> None:
    web_metrics = f"{stack.base}/metrics"
    http = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {API_KEY}"})
    follow(http, "bo", "ana")
    stack.worker.send_signal(signal.SIGSTOP)  # a stuck worker: jobs pile up
    try:
        for n in range(4):
            http.post("/v1/activities", json={"actor": "ana", "verb": "post", "object": f"p:{n}"})
        time.sleep(1.2)
        found = scrape(web_metrics)
        depth = value(found, "notifier_queue_depth", queue="high", state="ready") + value(
            found, "notifier_queue_depth", queue="low", state="ready")  # fmt: skip
        assert depth == 4
        oldest = max(value(found, "notifier_queue_oldest_age_seconds", queue=q)
                     for q in ("high", "low"))  # fmt: skip
        assert 1.0 <= oldest < 30
    finally:
        stack.worker.send_signal(signal.SIGCONT)

    def drained() -> bool:
        now = scrape(web_metrics)
        return sum(value(now, "notifier_queue_depth", queue=q, state="ready")
                   for q in ("high", "low")) == 0  # fmt: skip

    wait_until(drained)


def test_a_request_id_follows_an_activity_into_the_worker(stack: Stack) -> None:
    http = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {API_KEY}"})
    follow(http, "bo", "ana")
    response = http.post("/v1/activities", headers={"X-Request-Id": "req-follow-me-42"},
                         json={"actor": "ana", "verb": "post", "object": "post:1"})  # fmt: skip
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "req-follow-me-42"
    # Without one (or with one unfit for a log line), the server makes one up.
    other = http.get("/healthz", headers={"X-Request-Id": "bad id; with spaces"})
    made_up = other.headers["x-request-id"]
    assert made_up and " " not in made_up and len(made_up) == 16

    def in_worker_log() -> bool:
        return any(line.get("request_id") == "req-follow-me-42"
                   and "fanout job done" in str(line["message"])
                   for line in stack.log_lines("worker.log"))  # fmt: skip

    wait_until(in_worker_log)

    def access() -> list[dict[str, object]]:
        return [line for line in stack.log_lines("web.log") if line["logger"] == "notifier.access"]

    # The access line is written once the response went out: the client may be quicker.
    wait_until(lambda: any(line.get("request_id") == made_up for line in access()))
    assert any(line.get("request_id") == "req-follow-me-42" and "POST /v1/activities 201"
               in str(line["message"]) for line in access())  # fmt: skip
    web = stack.log_lines("web.log")
    for line in web:
        assert {"time", "level", "logger", "pid", "message"} <= line.keys()


async def test_no_secret_reaches_a_log_line(stack: Stack) -> None:
    http = httpx.AsyncClient(base_url=stack.base)
    keyed = {"Authorization": f"Bearer {API_KEY}"}
    token = (await http.post("/v1/tokens", json={"user": "bo"}, headers=keyed)).json()["token"]
    # A careless client puts its token in the query string; uvicorn's access log printed it.
    await http.get(f"/v1/me/feeds/notification?token={token}&access_token={token}",
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    await http.get("/v1/feeds/notification/bo", headers={"Authorization": f"Bearer {SECRET}"})
    await http.get(f"/nowhere?api_key={API_KEY}")
    url = f"ws://127.0.0.1:{stack.port}/v1/realtime"
    async with websockets.connect(url, origin=ORIGIN,  # type: ignore[arg-type]
                                  subprotocols=["notifier.v1", f"bearer.{token}x"]) as ws:  # type: ignore[list-item]  # fmt: skip
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    await http.aclose()
    await asyncio.sleep(0.5)
    text = stack.logs()
    assert "GET /v1/me/feeds/notification 422" in text, text  # the requests were logged ...
    for secret in (API_KEY, SECRET, ADMIN_PASSWORD, token, token.split(".")[2]):
        assert secret not in text  # ... and nothing secret with them


def test_a_bad_log_format_is_one_line_and_status_2() -> None:
    import subprocess
    import sys

    env = {"NOTIFIER_LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "notifier.cli", "serve"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "notifier: configuration error: NOTIFIER_LOG_FORMAT must be one of plain, json, not 'xml'"
    )
