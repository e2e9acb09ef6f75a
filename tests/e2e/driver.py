"""Runs a seeded world against a cluster, phase by phase, and reports what disagreed.

Between phases it waits for a quiet point: fanout has finished when every modelled feed, read
through every web process, equals the model (what still differs once it stops changing is a
divergence). Websocket tabs run all along, dropping and resuming at random; at quiet points
some widen their windows (rule 9). During one phase (``Options.restart_during``) a web
process is restarted as a deploy does it, while the phase's operations run (deploy.py). At the
end it waits until every tab equals an HTTP read of its range, then compares tabs, HTTP and the
model (checks.py). Every operation is checked against the model as it is answered (status, ids
removed, counts after a mark).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import traceback
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.api import Api, everything
from tests.e2e.checks import Audit
from tests.e2e.client import Tab
from tests.e2e.cluster import Cluster
from tests.e2e.deploy import Deploy
from tests.e2e.model import Act, AggregatedModel, Model
from tests.e2e.report import Finding, Options, Report
from tests.e2e.world import (
    ACTOR_FEED,
    BACKFILL_DEFAULT,
    FEEDS,
    SPECS,
    Batch,
    Delete,
    DeleteGroup,
    Follow,
    Mark,
    Mute,
    Op,
    Post,
    Snooze,
    Unfollow,
    World,
)
from tests.web.conftest import API_KEY

Json = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One operation as it ran: who, whom, which activity ids, what it answered."""

    phase: str
    text: str
    user: str = ""
    other: str = ""
    ids: tuple[str, ...] = ()


class Driver:
    """See the module docstring."""

    def __init__(self, cluster: Cluster, options: Options) -> None:
        self.cluster = cluster
        self.options = options
        self.world = World(options.seed, options.size)
        self.model = Model(FEEDS, ACTOR_FEED, BACKFILL_DEFAULT)
        self.api = Api([w.http for w in cluster.webs], API_KEY)
        self.rng = random.Random(options.seed * 7919 + 1)
        self.ids: dict[str, str] = {}
        """Plan key -> the id the server gave the activity."""
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.tabs: list[Tab] = []
        self.tasks: dict[Tab, asyncio.Task[None]] = {}
        self.tokens: dict[str, str] = {}
        self.findings: list[Finding] = []
        self.phase = "setup"
        self.ops: Counter[str] = Counter()
        self.timings: dict[str, float] = {}
        self.chaos_on = False
        self.chaos_held = False
        """A deploy holds the drops while it stops a process (which tabs were on it is exact)."""
        self.deploy: Deploy | None = None
        self.history: deque[Event] = deque(maxlen=50_000)
        """What the driver did that a divergence may need to be explained by."""
        self.gone: dict[str, Act] = {}
        """Removed activities (the model forgets them)."""
        self.ws_urls = [w.ws for w in cluster.webs]
        """The live web processes, in the order of ``api``'s: the tabs and the audit share
        this list, and a deploy puts a replacement in the place of the process it stops."""
        self.audit = Audit(self.api, self.ws_urls, self.model, self.world.users, options,
                           self._explain, self.gone)  # fmt: skip

    # -- the run -----------------------------------------------------------------------------
    async def run(self, rounds: int | None = None, *, until: float | None = None) -> Report:
        """``rounds`` rounds (or whole rounds until ``time.monotonic()`` passes ``until``),
        then the final checks."""
        started = time.monotonic()
        chaos: asyncio.Task[None] | None = None
        restart: asyncio.Task[None] | None = None
        try:
            await self._timed("follows", self._execute_all(self.world.initial_follows().ops))
            await self._timed("mutes", self._execute_all(self.world.initial_mutes().ops))
            plans = self.world.tabs()
            self.tabs = [
                Tab(f"tab{n}:{p.user}", p.user, p.feeds, self.ws_urls,
                    self._fresh_token_for(p.user), random.Random(self.options.seed + n))
                for n, p in enumerate(plans)
            ]  # fmt: skip
            await self._start([t for t, p in zip(self.tabs, plans, strict=True) if not p.late])
            self.chaos_on = True
            chaos = asyncio.create_task(self._chaos())
            for n, phase in enumerate(self.world.rounds(rounds)):
                self.phase = phase.name
                pace = self.options.pace / (1 if phase.name.endswith("add") else 3)
                if phase.name == self.options.restart_during:
                    restart = asyncio.create_task(self._restart())
                await self._timed(phase.name, self._execute_all(phase.ops, pace))
                if restart is not None:
                    await restart
                await self._timed(f"{phase.name}-quiet", self._quiet_point(phase.name))
                if n == 0:
                    await self._start([t for t in self.tabs if t not in self.tasks])
                await self._widen_windows()
                self._forget()
                if until is not None and time.monotonic() > until and phase.name.endswith("graph"):
                    break
            self.phase = "final"
            self.chaos_on = False
            await self._timed("final", self._final())
        except Exception:
            self._finding("harness", self.phase, traceback.format_exc()[-3000:])
        finally:
            self.chaos_on = False
            for task in (chaos, restart):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t.stop() for t in self.tabs))
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            await self.api.close()
        self._collect()
        self.timings["total"] = round(time.monotonic() - started, 1)
        notes = list(dict.fromkeys(self.audit.notes + self.model.notes()))
        return Report(self.options, self.findings, notes, self._stats())

    async def _timed(self, name: str, work: Awaitable[None]) -> None:
        began = time.monotonic()
        await work
        if len(self.timings) < 30:  # a soak runs hundreds of phases: the first ones show
            self.timings[name] = round(time.monotonic() - began, 1)

    def _forget(self) -> None:
        """A soak runs for hours: forget what no later operation can name."""
        if len(self.ids) > 5000:
            self.ids = {k: v for k, v in self.ids.items() if k in self.world.bodies}
        if len(self.gone) > 20_000:
            for activity_id in list(self.gone)[:10_000]:
                del self.gone[activity_id]

    def _finding(self, kind: str, where: str, detail: str) -> None:
        self.findings.append(Finding(kind, where, detail))

    def _log(
        self, text: str, *, user: str = "", other: str = "", ids: tuple[str, ...] = ()
    ) -> None:
        self.history.append(Event(self.phase, text, user, other, ids))

    def _explain(self, group: str, user: str, activity_id: str) -> str:
        """What the model knows of an activity in ``group:user``, and the operations that
        could have put it there or taken it out."""
        act = self.model.acts.get(activity_id) or self.gone.get(activity_id)
        if act is None:
            return "an activity the driver never posted"
        state = "live" if activity_id in self.model.acts else "removed"
        parts = [f"{act.actor} {act.verb} {act.time:%H:%M:%S} fid={act.foreign_id} {state}"]
        if SPECS[group].fanout:
            follows = act.actor in self.model.following[user]
            parts.append(f"{user} follows {act.actor} now: {follows}")
            kept = [f"{e.other} ({e.phase})" for e in self.history
                    if e.user == user and "keep_history=True" in e.text]  # fmt: skip
            if kept:
                parts.append(f"{user} unfollowed with keep_history=true: {kept[-4:]}")
        events = [e for e in self.history
                  if activity_id in e.ids or (e.user == user and e.other == act.actor)]  # fmt: skip
        parts += [f"{e.phase}: {e.text}" for e in events[-6:]]
        return "; ".join(parts)

    # -- tabs --------------------------------------------------------------------------------
    def _fresh_token_for(self, user: str) -> Callable[[], Awaitable[str]]:
        async def fresh() -> str:
            return await self.api.token(user)

        return fresh

    async def _token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = await self.api.token(user)
        return self.tokens[user]

    async def _start(self, tabs: Sequence[Tab]) -> None:
        for tab in tabs:
            self.tasks[tab] = asyncio.create_task(tab.run())
        await self._all_connected(tabs)

    async def _all_connected(self, tabs: Sequence[Tab], within: float = 20) -> None:
        waits = [asyncio.wait_for(t.connected.wait(), within) for t in tabs]
        for tab, outcome in zip(tabs, await asyncio.gather(*waits, return_exceptions=True),
                                strict=True):  # fmt: skip
            if isinstance(outcome, BaseException):
                closes = [f"{c.code} {c.reason}" for c in list(tab.closes)[-3:]]
                self._finding("protocol", tab.name, f"not connected within {within}s: {closes}")

    async def _chaos(self) -> None:
        """Tabs drop at random moments (a clean close or a dead network) and come back."""
        while True:
            rate = max(1, len(self.tasks)) / self.options.drop_every
            await asyncio.sleep(self.rng.expovariate(rate))
            if self.chaos_on and self.tasks:
                tab = self.rng.choice(list(self.tasks))
                if not self.chaos_held:
                    await tab.drop()

    async def _widen_windows(self) -> None:
        """Rule 9, at a quiet point: some windowed tabs load an older page over HTTP."""
        for tab in self.tabs:
            for state in tab.feeds.values():
                if not state.oldest or state.fresh or self.rng.random() > 0.3:
                    continue
                if not tab.connected.is_set():
                    continue
                response = await self.api.call(
                    "GET", f"/v1/me/feeds/{state.name}", token=await self._token(tab.user),
                    params={"limit": 5, "id_lt": state.oldest, **everything(state.name)},
                )  # fmt: skip
                if response.status_code != 200:
                    self._finding("response", f"{tab.name} window", response.text[:300])
                    continue
                page = response.json()
                loaded = page.get("groups", page.get("activities", []))
                oldest = state.widen(loaded, page.get("next"))
                await tab.send({"type": "window", "feed": state.name, "oldest": oldest})

    async def _restart(self) -> None:
        """Restart one web process as a deploy does (deploy.py), while the phase runs."""
        began = time.monotonic()
        index = self.options.seed % len(self.ws_urls)
        self.deploy = Deploy(self.cluster, self.api, self.ws_urls, index, self.phase)
        try:
            if await self.deploy.start_replacement():
                self.chaos_held = True
                try:
                    await self.deploy.switch(list(self.tasks))
                finally:
                    self.chaos_held = False
        except Exception:
            self._finding("harness", f"{self.phase} restart", traceback.format_exc()[-3000:])
        self.timings["restart"] = round(time.monotonic() - began, 1)

    # -- operations --------------------------------------------------------------------------
    async def _execute_all(self, ops: Sequence[Op], pace: float = 0) -> None:
        queue: asyncio.Queue[Op] = asyncio.Queue()
        for op in ops:
            queue.put_nowait(op)
        gap = 2 * pace * self.options.concurrency / max(1, len(ops))

        async def worker() -> None:
            while not queue.empty():
                op = queue.get_nowait()
                await asyncio.sleep(self.rng.uniform(0, gap))
                self.ops[type(op).__name__] += 1
                try:
                    await self._execute(op)
                except AssertionError as exc:
                    self._finding("response", f"{self.phase} {type(op).__name__}", str(exc))
                except httpx.TransportError:
                    pass  # recorded by Api; the run goes on, the test fails
                except Exception:
                    self._finding("harness", f"{self.phase} {op}", traceback.format_exc()[-1500:])

        await asyncio.gather(*(worker() for _ in range(self.options.concurrency)))

    async def _execute(self, op: Op) -> None:
        if isinstance(op, Post):
            await self._post(op)
        elif isinstance(op, Batch):
            await self._batch(op)
        elif isinstance(op, Delete):
            await self._delete(op)
        elif isinstance(op, Follow | Unfollow):
            await self._graph(op)
        elif isinstance(op, Mute):
            await self._mute(op)
        elif isinstance(op, Snooze):
            await self._snooze(op)
        elif isinstance(op, DeleteGroup):
            await self._delete_group(op)
        else:
            await self._mark(op)

    @contextlib.asynccontextmanager
    async def _locked(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Serialise writes to the same feeds (in a fixed order: no deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self.locks[key])
            yield

    @staticmethod
    def _to_locks(bodies: Sequence[Json]) -> list[str]:
        return [f for b in bodies for f in b.get("to", []) if SPECS[f.split(":")[0]].modelled]

    async def _post(self, op: Post) -> None:
        async with self._locked(self._to_locks([op.body])):
            response = await self.api.call("POST", "/v1/activities", body=op.body)
            status = response.status_code
            if status in (200, 201):
                act = Act.from_json(response.json())
                known = self.ids.setdefault(op.key, act.id)
                self.model.add([act])
                self._log(f"POST {op.key} {act.actor} {act.verb} to={list(act.to)} -> {status}",
                          other=act.actor, ids=(act.id,))  # fmt: skip
            assert status == op.expect, (
                f"POST {op.key} {op.body}: expected {op.expect}, got {status} {response.text[:300]}"
            )
            if status in (200, 201):
                assert act.same_content(op.body), f"stored {response.text} for sent {op.body}"
                assert known == act.id, f"re-send of {op.key} got id {act.id}, first {known}"

    async def _batch(self, op: Batch) -> None:
        async with self._locked(self._to_locks(op.bodies)):
            response = await self.api.call(
                "POST", "/v1/activities/batch", body={"activities": list(op.bodies)}
            )
            assert response.status_code == 201, f"batch: {response.status_code} {response.text}"
            acts = [Act.from_json(a) for a in response.json()["activities"]]
            self.ids.update(zip(op.keys, (a.id for a in acts), strict=True))
            self.model.add(acts)
            for act in acts:
                self._log(f"POST batch {act.actor} {act.verb} to={list(act.to)}",
                          other=act.actor, ids=(act.id,))  # fmt: skip
            for act, body in zip(acts, op.bodies, strict=True):
                assert act.same_content(body), f"batch stored {act} for sent {body}"

    async def _delete(self, op: Delete) -> None:
        if op.foreign_id is not None:
            expected = self.model.ids_for_foreign_id(op.foreign_id)
            path, params = "/v1/activities", {"foreign_id": op.foreign_id}
        else:
            activity_id = self.ids.get(op.key)
            if activity_id is None:
                return  # its POST failed: already a finding
            expected = [activity_id] if activity_id in self.model.acts else []
            path, params = f"/v1/activities/{activity_id}", None
        bodies = [{"to": self.model.acts[i].to} for i in expected]
        async with self._locked(self._to_locks(bodies)):
            response = await self.api.call("DELETE", path, params=params)
            self.gone.update((i, self.model.acts[i]) for i in expected)
            self.model.remove(expected)
            self._log(f"DELETE {op.key} fid={op.foreign_id} -> {response.status_code}",
                      ids=tuple(expected))  # fmt: skip
            if not expected:
                assert response.status_code == 404, f"DELETE {path} {params}: {response.text}"
                return
            assert response.status_code == 200, f"DELETE {path} {params}: {response.text}"
            removed = sorted(response.json()["removed"])
            assert removed == expected, (
                f"DELETE {path} {params}: removed {removed}, model {expected}"
            )

    async def _graph(self, op: Follow | Unfollow) -> None:
        async with self._locked([f"fanout:{op.user}"]):
            if isinstance(op, Follow):
                body: Json = {"user": op.user, "target": op.target}
                if op.backfill is not None:
                    body["backfill"] = op.backfill
                response = await self.api.call("POST", "/v1/follows", body=body)
                expected = self.model.follow(op.user, op.target, op.backfill)
                answer = "followed"
            else:
                keep = "true" if op.keep_history else "false"
                response = await self.api.call(
                    "DELETE", f"/v1/follows/{op.user}/{op.target}", params={"keep_history": keep}
                )
                expected = self.model.unfollow(op.user, op.target, op.keep_history)
                answer = "unfollowed"
            assert response.status_code == 200, f"{op}: {response.status_code} {response.text}"
            got = response.json()[answer]
            self._log(f"{op} -> {answer}={got}", user=op.user, other=op.target)
            assert got == expected, f"{op}: answered {answer}={got}, model says {expected}"

    async def _mute(self, op: Mute) -> None:
        response = await self.api.call(
            "PUT", f"/v1/users/{op.user}/preferences", body={"muted": op.muted}
        )
        assert response.status_code == 200, f"{op}: {response.status_code} {response.text}"
        answered = response.json()["muted"]
        assert all(answered[k] == sorted(v) for k, v in op.muted.items()), f"{op}: {answered}"
        self.model.mute(op.user, op.muted)
        self._log(f"{op}", user=op.user)

    async def _mark(self, op: Mark) -> None:
        user = op.user
        async with self._locked([f"notification:{user}"]):
            body = dict(op.flags)
            body.update(self._mark_target(op, self._notification_tabs(user)))
            response = await self._on_feed("POST", user, op.via_server, "/mark", body)
            counts = self.model.mark("notification", user, body)
            self._answered(f"mark {body}", user, response, counts)

    async def _snooze(self, op: Snooze) -> None:
        user = op.user
        async with self._locked([f"notification:{user}"]):
            target = self._pick_group(user, op.pick, self._notification_tabs(user))
            if target is None:
                return
            until = (datetime.now(UTC) + timedelta(days=1)).isoformat() if op.far else None
            body = {"group_ids": [target], "until": until}
            response = await self._on_feed("POST", user, op.via_server, "/snooze", body)
            counts = self.model.snooze("notification", user, [target], op.far)
            self._answered(f"snooze {body}", user, response, counts)

    async def _delete_group(self, op: DeleteGroup) -> None:
        user = op.user
        async with self._locked([f"notification:{user}"]):
            target = self._pick_group(user, op.pick, self._notification_tabs(user))
            if target is None:
                return
            response = await self._on_feed("DELETE", user, op.via_server, f"/groups/{target}")
            removed = self.model.delete_group("notification", user, target)
            expected = 200 if removed else 404
            assert response.status_code == expected, f"delete {user} {target}: {response.text}"
            if removed and ("notification", user) not in self.audit.diverged:
                answer = response.json()
                assert sorted(answer["removed"]) == sorted(removed), f"delete {target}: {answer}"
                assert answer["counts"] == self.model.counts("notification", user)

    async def _on_feed(
        self, method: str, user: str, via_server: bool, rest: str, body: Json | None = None
    ) -> httpx.Response:
        """A call on ``user``'s notification feed: the server API's route, or the client
        API's with the user's token."""
        if via_server:
            return await self.api.call(method, f"/v1/feeds/notification/{user}{rest}", body=body)
        token = await self._token(user)
        return await self.api.call(
            method, f"/v1/me/feeds/notification{rest}", token=token, body=body
        )

    def _answered(self, what: str, user: str, response: httpx.Response, counts: Json) -> None:
        """The answer is 200 with the model's counts (unless the feed diverged already)."""
        assert response.status_code == 200, f"{what} of {user}: {response.text}"
        if ("notification", user) not in self.audit.diverged:
            assert response.json() == counts, (
                f"{what} on notification:{user} answered {response.json()}, model {counts}"
            )

    def _notification_tabs(self, user: str) -> list[Tab]:
        return [t for t in self.tabs if t.user == user and "notification" in t.feeds]

    def _pick_group(self, user: str, pick: float, tabs: list[Tab]) -> str | None:
        """A group of ``user``'s notification feed, from what their tab shows (or the
        model when they have none)."""
        held = tabs[int(pick * len(tabs))].feeds["notification"].newest() if tabs else []
        feed = self.model.feed("notification", user)
        assert isinstance(feed, AggregatedModel)
        ids = [g["id"] for g in held] or [g.id for g in feed.newest()]
        return ids[min(int(pick * len(ids)), len(ids) - 1)] if ids else None

    def _mark_target(self, op: Mark, tabs: list[Tab]) -> Json:
        """What the user marks: from what their tab shows (a user marks what they saw), or
        from the model when they have no tab."""
        held = tabs[int(op.pick * len(tabs))].feeds["notification"].newest() if tabs else []
        feed = self.model.feed("notification", op.user)
        assert isinstance(feed, AggregatedModel)
        groups: list[Json] = held or [{"id": g.id, "position": g.position,
                                       "activities": [{"id": g.members[-1]}]}
                                      for g in feed.newest()]  # fmt: skip
        if op.target == "all" or not groups:
            return {"all": True}
        if op.target in ("all-read", "all-unseen"):
            return {"all": True, "status": op.target.removeprefix("all-")}
        picked = groups[min(int(op.pick * len(groups)), len(groups) - 1)]
        if op.target == "up_to":
            return {"all": True, "up_to": groups[0]["position"] if op.pick < 0.5 else
                    picked["position"]}  # fmt: skip
        if op.target == "group":
            return {"group_ids": [picked["id"]]}
        return {"activity_ids": [picked["activities"][-1]["id"]]}

    # -- quiet points and the end -----------------------------------------------------------
    async def _quiet_point(self, label: str) -> None:
        # A failed read is recorded by Api (a failure); the next quiet point compares again.
        with contextlib.suppress(httpx.TransportError):
            await self.audit.quiet_point(label)
        for problem in self.cluster.dead():
            self._finding("dead-process", label, problem)

    async def _final(self) -> None:
        await self._all_connected(self.tabs)
        await self._quiet_point("the last phase")
        await self.audit.converge(self.tabs, self._token)

    def _collect(self) -> None:
        self.audit.tab_findings(self.tabs)
        self.findings += self.audit.findings
        if self.deploy is not None:
            self.findings += self.deploy.check(self.tabs)
        for failure in self.api.failures:
            self._finding("5xx", failure.where, f"{failure.status}: {failure.detail}")
        for line in self.cluster.error_lines()[:50]:
            self._finding("log-error", line.split(":", 1)[0], line.split(":", 1)[1].strip())

    def _stats(self) -> dict[str, Any]:
        frames: Counter[str] = Counter()
        for tab in self.tabs:
            frames.update(tab.frames)
        closes = Counter(c.code for t in self.tabs for c in t.server_closed)
        restart = {"restart": self.deploy.summary(self.tabs)} if self.deploy else {}
        return {
            "cluster": f"{len(self.cluster.webs)} web, {len(self.cluster.workers.procs)} worker "
            f"processes on {self.cluster.storage_url}",
            "world": f"{len(self.world.users)} users, {self.world.serial} activities, "
            f"{len(self.model.acts)} live, ops {dict(self.ops)}",
            "tabs": f"{len(self.tabs)} tabs, {sum(t.connections for t in self.tabs)} "
            f"connections, drops {sum(t.drops for t in self.tabs)}, "
            f"server closes {dict(closes)}",
            "frames": dict(frames),
            "http statuses": f"{dict(self.api.statuses)}, retried {self.api.retried}",
            **restart,
            "seconds": self.timings,
        }
