"""Client vs HTTP vs model, at quiet points and at the end: comparisons that say which side
differs, where, and a likely why (the kinds of findings: report.py).

At a quiet point every modelled feed of every user, read over HTTP through every web process,
must be the same everywhere and equal the model (fanout feeds are waited for; a mismatch that
stops changing is a divergence, reported once, and that feed is left out from then on). At
the end every tab must hold exactly what an HTTP read of its window through its own web
process returns (waited for too), and where it does, what the model holds there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from tests.e2e.api import Api
from tests.e2e.client import Tab
from tests.e2e.model import Act, FeedModel, FeedSpec, FlatModel, Model, position, view_of
from tests.e2e.report import Finding, Options
from tests.e2e.world import FEEDS, SPECS

Json = dict[str, Any]
Explain = Callable[[str, str, str], str]
"""(feed group, user, activity id) -> what the driver knows of it there."""
Token = Callable[[str], Awaitable[str]]
SPLIT = "web processes disagree"
#: Close codes a server may choose that are not a failure of notifier: 4401 (token expired,
#: the tab resumes), 1012 (a restart: deploy.py judges those) and those a client earns by
#: breaking the protocol (the harness's fault).
CLOSE_KINDS = {1011: "close-1011", 4400: "harness", 4403: "harness", 4404: "harness",
               4408: "harness", 4401: "", 1012: ""}  # fmt: skip


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict) and "id" in value[0]:
        return "[" + ",".join(str(v["id"])[-6:] for v in value) + "]"
    if isinstance(value, list | tuple) and value and isinstance(value[0], tuple):
        return "[" + ",".join(str(v[0])[-6:] for v in value) + "]"
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def diff_items(
    left: tuple[str, Sequence[Json]],
    right: tuple[str, Sequence[Json]],
    hint: Callable[[str, Json, str], str] | None = None,
) -> list[str]:
    """How two newest-first item lists differ: items only on one side, fields that differ,
    order. Each line names the side; ``hint(side, item, problem)`` may add a likely cause."""
    (lname, litems), (rname, ritems) = left, right
    lby = {i["id"]: i for i in litems}
    rby = {i["id"]: i for i in ritems}
    out: list[str] = []

    def note(side: str, item: Json, problem: str) -> str:
        extra = hint(side, item, problem) if hint else ""
        return f"{problem}{f' ({extra})' if extra else ''}"

    for item in litems:
        if item["id"] not in rby:
            out.append(note(lname, item, f"{item['id']} @{position(item)} only in {lname}"))
    for item in ritems:
        if item["id"] not in lby:
            out.append(note(rname, item, f"{item['id']} @{position(item)} only in {rname}"))
    for item in litems:
        other = rby.get(item["id"])
        if other is None or other == item:
            continue
        fields = [k for k in sorted(set(item) | set(other)) if item.get(k) != other.get(k)]
        shown = "; ".join(f"{k}: {lname}={_short(item.get(k))} {rname}={_short(other.get(k))}"
                          for k in fields[:6])  # fmt: skip
        out.append(note(lname, item, f"{item['id']} differs: {shown}"))
    if not out and [i["id"] for i in litems] != [i["id"] for i in ritems]:
        out.append(f"same items, other order: {lname} {_short(list(litems))} "
                   f"{rname} {_short(list(ritems))}")  # fmt: skip
    return out


def web_name(url: str) -> str:
    """``web-<port>``, as the process's log file is named."""
    return f"web-{url.split(':')[2].split('/')[0]}"


def window(items: Sequence[Json], oldest: str | None, max_length: int) -> list[Json]:
    """What a client holding down to ``oldest`` must hold of a newest-first feed."""
    held = [i for i in items if not oldest or position(i) >= oldest]
    return sorted(held, key=position, reverse=True)[:max_length]


def model_views(spec: FeedSpec, items: Sequence[Json]) -> list[Json]:
    return [view_of(spec, i) for i in items]


def overshoot(feed: FeedModel, http: list[Json], model: list[Json]) -> list[str]:
    """Cassandra's documented deviation (docs/storage.md): writes racing on a full flat feed
    can leave it over ``max_length`` until its next write trims it (and a removal meanwhile
    makes the extra items ordinary members). The ids HTTP has beyond the model when that is
    all that differs: older than everything the model holds, and trimmed by the model."""
    if not isinstance(feed, FlatModel):
        return []
    mine = [i["id"] for i in model]
    extra = [i["id"] for i in http if i["id"] not in set(mine)]
    rest = [i["id"] for i in http if i["id"] not in set(extra)]
    floor = min(mine, default="~")
    if not extra or rest != mine or any(i >= floor or i not in feed.trimmed for i in extra):
        return []
    return extra


class Audit:
    """The comparisons of one run (see the module docstring)."""

    def __init__(
        self, api: Api, ws_urls: list[str], model: Model, users: Sequence[str],
        options: Options, explain: Explain, gone: Mapping[str, Act],
    ) -> None:  # fmt: skip
        self.api = api
        self.ws_urls = ws_urls
        """The web processes' websocket URLs, in the order of ``api``'s clients (the driver's
        list: a deploy puts the replacement in the place of the process it stops)."""
        self.model = model
        self.users = users
        self.options = options
        self.explain = explain
        self.gone = gone
        self.findings: list[Finding] = []
        self.diverged: set[tuple[str, str]] = set()
        self.adopted: dict[tuple[str, str], set[str]] = {}
        """Cassandra: overshoot ids taken into the model (``overshoot``), by feed."""
        self.notes: list[str] = []

    # -- quiet points ------------------------------------------------------------------------
    async def quiet_point(self, label: str) -> None:
        """Wait until every fanout feed over HTTP equals the model; what still differs when
        that stops changing (or at the timeout) is a divergence. Feeds written in the
        request (the actor's, ``to``) are compared once; the unmodelled fanout feed is waited
        for until two reads agree."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.quiesce_timeout
        fanout = [s.name for s in FEEDS if s.fanout and s.modelled]
        direct = [s.name for s in FEEDS if s.modelled and not s.fanout]
        last: dict[tuple[str, str], list[str]] = {}
        since = loop.time()
        while True:
            wrong = await self.feeds_vs_model(fanout)
            if wrong != last:
                last, since = wrong, loop.time()
            if not wrong or loop.time() > deadline or loop.time() - since > self.options.settle:
                break
            await asyncio.sleep(0.3)
        if self.options.flat_overshoot_ok:  # quiet now: what is over stays until a write
            wrong = await self.feeds_vs_model(fanout, adopt=True)
        wrong.update(await self.feeds_vs_model(direct))
        for (group, user), lines in wrong.items():
            self.diverged.add((group, user))
            more = f"; ... {len(lines) - 6} more" if len(lines) > 6 else ""
            kind = "http≠http" if lines[0].startswith(SPLIT) else "http≠model"
            self._add(kind, f"{group}:{user} after {label}", "; ".join(lines[:6]) + more)
        await self._settled([s.name for s in FEEDS if s.fanout and not s.modelled], deadline)

    async def feeds_vs_model(
        self, groups: Sequence[str], *, adopt: bool = False
    ) -> dict[tuple[str, str], list[str]]:
        """HTTP (server API, whole feeds) against the model: the differences by feed. With
        ``adopt``, a Cassandra overshoot is taken into the model (it is real from now on)."""
        limit = asyncio.Semaphore(8)
        pairs = [(g, u) for g in groups for u in self.users if (g, u) not in self.diverged]

        async def one(group: str, user: str) -> list[str]:
            async with limit:
                reads = [await self.api.read(group, user, via=n)
                         for n in range(len(self.ws_urls))]  # fmt: skip
            items, counts = reads[0]
            spec = SPECS[group]
            for n, (other, _) in enumerate(reads[1:], 1):
                split = diff_items(
                    (web_name(self.ws_urls[0]), model_views(spec, items)),
                    (web_name(self.ws_urls[n]), model_views(spec, other)),
                    lambda side, item, problem: self.explain(group, user, item["id"]),
                )  # fmt: skip
                if split:
                    return [f"{SPLIT}: " + "; ".join(split)]
            mine = self.model.items(group, user)
            theirs = model_views(spec, items)
            feed = self.model.feed(group, user)
            extra = overshoot(feed, theirs, mine) if self.options.flat_overshoot_ok else []
            if extra and adopt and isinstance(feed, FlatModel):
                feed.adopt(extra)
                self.adopted.setdefault((group, user), set()).update(extra)
                self.notes.append(f"{group}:{user}: Cassandra overshoot kept by the server "
                                  f"(docs/storage.md), taken into the model: {extra}")  # fmt: skip
            if extra:
                return []
            lines = diff_items(
                ("http", theirs), ("model", mine),
                lambda side, item, problem: self.explain(group, user, item["id"]),
            )  # fmt: skip
            if lines and not spec.aggregated and len(theirs) < min(len(mine), spec.max_length):
                lines.append(f"http shows {len(theirs)} items, the model {len(mine)} "
                             f"(max_length {spec.max_length}): ids of removed activities left "
                             "in the feed hold slots that reads skip?")  # fmt: skip
            expected = self.model.counts(group, user)
            if expected is not None and counts != expected:
                lines.append(f"counts http={counts} model={expected}")
            return lines

        found = await asyncio.gather(*(one(g, u) for g, u in pairs))
        return {pair: lines for pair, lines in zip(pairs, found, strict=True) if lines}

    async def _settled(self, groups: Sequence[str], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        previous: list[Any] = []
        while groups and loop.time() < deadline + 5:
            now = [await self.api.read(g, u, via=0) for g in groups for u in self.users]
            if now == previous:
                return
            previous = now
            await asyncio.sleep(0.4)

    # -- the end -----------------------------------------------------------------------------
    async def converge(self, tabs: Sequence[Tab], token: Token) -> None:
        """Wait until every tab equals HTTP; then what differs is a finding, and so is a
        tab that differs from the model where it agrees with HTTP."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.converge_timeout
        while True:
            found = [f for tab in tabs for f in await self._tab_vs_http(tab, token)]
            if not found or loop.time() > deadline:
                break
            await asyncio.sleep(0.5)
        self.findings += found
        known = {f.where for f in found}
        self.findings += [f for tab in tabs for f in self._tab_vs_model(tab, known)]

    async def _tab_vs_http(self, tab: Tab, token: Token) -> list[Finding]:
        out = []
        for name, state in tab.feeds.items():
            where = f"{tab.name} {name}"
            if state.oldest is None:
                out.append(Finding("client≠http", where, "the tab holds no sync of this feed"))
                continue
            via = self.ws_urls.index(tab.url) if tab.url in self.ws_urls else None
            items, counts = await self.api.read(name, token=await token(tab.user),
                                                down_to=state.oldest, via=via)  # fmt: skip
            expected = window(items, state.oldest, SPECS[name].max_length)
            hint = self._hint(name, tab.user, expected)
            lines = diff_items(("client", state.newest()), ("http", expected), hint)
            if SPECS[name].kind == "notification" and state.counts != counts:
                lines.append(f"counts client={state.counts} http={counts}")
            if lines:
                lines.append(f"window oldest={state.oldest or '∅'} "
                             f"max_length={state.max_length}, on {web_name(tab.url)}; last frames: "
                             + " | ".join(list(state.history)[-8:]))  # fmt: skip
                out.append(Finding("client≠http", where, "; ".join(lines)))
        return out

    def _hint(self, feed: str, user: str, expected: list[Json]) -> Callable[[str, Json, str], str]:
        max_length = SPECS[feed].max_length

        def hint(side: str, item: Json, problem: str) -> str:
            removed = [a["id"] for a in item.get("activities", []) if a["id"] in self.gone]
            if side == "client" and removed:
                why = self.explain(feed, user, removed[0])
                return f"it shows removed activities {removed}: {why}"
            if side != "client" or "only in" not in problem:
                return "lost or not yet sent" if side == "http" else "stale"
            if item["id"] in self.gone:
                why = self.explain(feed, user, item["id"])
                return f"a removed activity the client was not told about: {why}"
            if len(expected) >= max_length and position(item) < position(expected[-1]):
                return "trimmed in storage, still held: not retracted (rule 5)"
            return "gone from storage (trimmed, emptied or merged), still held"

        return hint

    def _tab_vs_model(self, tab: Tab, known: set[str]) -> list[Finding]:
        out = []
        for name, state in tab.feeds.items():
            spec = SPECS[name]
            if not spec.modelled or (name, tab.user) in self.diverged or state.oldest is None:
                continue
            if f"{tab.name} {name}" in known:
                continue
            mine = window(self.model.items(name, tab.user), state.oldest, spec.max_length)
            lines = diff_items(("client", model_views(spec, state.newest())), ("model", mine))
            expected = self.model.counts(name, tab.user)
            if expected is not None and state.counts != expected:
                lines.append(f"counts client={state.counts} model={expected}")
            if lines:
                out.append(Finding("client≠model", f"{tab.name} {name}", "; ".join(lines[:8])))
        return out

    def tab_findings(self, tabs: Sequence[Tab]) -> None:
        """What tabs saw: protocol violations, server closes, their own errors."""
        for tab in tabs:
            for text in tab.errors:
                self._add("harness", tab.name, text)
            for text in tab.violations:
                self._add("protocol", tab.name, text)
            for close in tab.server_closed:
                kind = CLOSE_KINDS.get(close.code, "protocol")
                if kind:
                    self._add(kind, tab.name, f"server closed with {close.code} {close.reason!r}")

    def _add(self, kind: str, where: str, detail: str) -> None:
        self.findings.append(Finding(kind, where, detail))
