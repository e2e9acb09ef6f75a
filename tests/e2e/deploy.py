"""A rolling restart of one web process in the middle of a run, done as docs/operations.md
("Deploys") says, and what its clients saw.

1. A replacement process starts on the same config; it is ready when ``GET /readyz`` says 200.
2. The load balancer switches: the driver's HTTP calls and the tabs' next connections go to
   the replacement, in the old process's place (requests in flight there are still answered).
3. Once every tab is connected (the driver holds its random drops meanwhile, so that which
   tabs were on the old process is exact), the old process gets SIGTERM. It must close each
   websocket with 1012 ``restart; retry in N ms``, N in [0, ``RESTART_WINDOW``), and exit
   cleanly (``CLEAN_EXITS``); its log is checked with the others.
4. Its tabs wait N ms, reconnect to a process that is up and resume (client.py, rule 10).

A ``restart`` finding: a tab of the old process without a 1012 naming a delay in the window,
or not back on a live process after that delay; a 1012 from anywhere else; a tab pointing at
the old process at the end; the old process not exiting, or exiting otherwise. That nothing
was lost or doubled is for the run's final checks.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from tests.e2e.api import Api
from tests.e2e.checks import web_name
from tests.e2e.client import Comeback, Tab
from tests.e2e.cluster import CLEAN_EXITS, RESTART_WINDOW, Cluster, Web
from tests.e2e.report import Finding

READY_WITHIN = 30.0
SETTLE_WITHIN = 10.0
"""Tabs in a drop's offline pause come back within 1.5 s."""
EXIT_WITHIN = 15.0
"""The server's ``CLOSE_TIMEOUT`` (5 s) and its backstop (5 s more), with a margin."""
BACK_LATE = 5.0
"""A tab back later than its delay plus this took more than the one attempt rule 10 asks."""


async def until(condition: Callable[[], bool], within: float) -> bool:
    """Whether ``condition`` held within ``within`` seconds (checked every 50 ms)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@dataclass
class Deploy:
    """The restart of the web process at ``urls[index]`` (see the module docstring)."""

    cluster: Cluster
    api: Api
    urls: list[str]
    """The driver's websocket URLs of the live processes, in the order of ``api``'s."""
    index: int
    phase: str
    window: float = RESTART_WINDOW
    old: Web | None = None
    new: Web | None = None
    ready_after: float | None = None
    on_old: list[Tab] = field(default_factory=list)
    """The tabs connected to the old process when it got SIGTERM."""
    pointed: set[str] = field(default_factory=set)
    """The tabs whose latest attempt went to the old process then (a 1012 from it is no
    surprise for them; ``on_old`` when every tab had settled)."""
    before: dict[str, int] = field(default_factory=dict)
    """Each tab's number of comebacks before the SIGTERM (by tab name)."""
    signalled: float | None = None
    exited_after: float | None = None
    findings: list[Finding] = field(default_factory=list)

    async def start_replacement(self) -> bool:
        """Step 1. False (and a finding) when the replacement is not ready in time."""
        began = time.monotonic()
        self.old = next(w for w in self.cluster.webs if w.ws == self.urls[self.index])
        self.new = await self.cluster.add_web()
        last = "no answer"
        async with httpx.AsyncClient(base_url=self.new.http, timeout=5) as http:
            while time.monotonic() - began < READY_WITHIN:
                try:
                    response = await http.get("/readyz")
                except httpx.TransportError as exc:
                    last = repr(exc)
                else:
                    if response.status_code == 200:
                        self.ready_after = time.monotonic() - began
                        return True
                    last = f"{response.status_code} {response.text[:200]}"
                await asyncio.sleep(0.1)
        self._finding(f"{web_name(self.new.ws)} not ready within {READY_WITHIN:g} s: {last}")
        return False

    async def switch(self, tabs: Sequence[Tab]) -> None:
        """Steps 2-4: switch, SIGTERM, then wait for the old process's exit and its tabs'
        return (what went wrong shows in ``check``)."""
        old, new = self.old, self.new
        assert old is not None and new is not None, "start_replacement first"
        retired_client = self.api.replace(self.index, new.http)
        self.urls[self.index] = new.ws
        await until(lambda: all(t.connected.is_set() and not t.dropping for t in tabs),
                    SETTLE_WITHIN)  # fmt: skip
        self.on_old = [t for t in tabs if t.url == old.ws and t.connected.is_set()]
        self.pointed = {t.name for t in tabs if t.url == old.ws}
        self.before = {t.name: len(t.comebacks) for t in tabs}
        self.cluster.retire(old)
        self.signalled = time.monotonic()

        async def exit_() -> None:
            if await until(lambda: old.proc.poll() is not None, EXIT_WITHIN):
                self.exited_after = time.monotonic() - (self.signalled or 0)

        def back() -> bool:
            return all(t.connected.is_set() and t.url != old.ws for t in self.on_old)

        await asyncio.gather(exit_(), until(back, self.window + BACK_LATE + SETTLE_WITHIN))
        await retired_client.aclose()

    def comebacks(self, tab: Tab) -> list[Comeback]:
        """The tab's closes naming a delay since the SIGTERM, from the old process."""
        old = self.old.ws if self.old else ""
        fresh = tab.comebacks[self.before.get(tab.name, len(tab.comebacks)) :]
        return [c for c in fresh if c.close.url == old]

    def check(self, tabs: Sequence[Tab]) -> list[Finding]:
        """What did not go as docs/operations.md says (findings of kind ``restart``)."""
        if self.old is None or self.signalled is None:
            return list(self.findings)
        old, name = self.old, web_name(self.old.ws)
        found = [p for p in map(self._tab_problems, self.on_old) if p]
        for tab in tabs:
            unasked = [c for c in tab.server_closed if c.code == 1012
                       and (c.url != old.ws or tab.name not in self.pointed)]  # fmt: skip
            if unasked:
                shown = [f"{web_name(c.url)} {c.reason!r}" for c in unasked[:3]]
                found.append(f"{tab.name}: 1012 from a process it was not on when {name} "
                             f"was stopped: {shown}")  # fmt: skip
            if tab.url == old.ws:
                found.append(f"{tab.name} still points at {name} at the end")
        code = old.proc.returncode
        if self.exited_after is None:
            found.append(f"{name} still runs {EXIT_WITHIN:g} s after SIGTERM")
        elif code not in CLEAN_EXITS:
            found.append(f"{name} exited with {code} after SIGTERM, not one of {CLEAN_EXITS}")
        return self.findings + [Finding("restart", f"{self.phase} restart", f) for f in found]

    def _tab_problems(self, tab: Tab) -> str:
        """How a tab of the old process strayed from rule 10 ("": it did not)."""
        old_ws = self.old.ws if self.old else ""
        old = web_name(old_ws) if old_ws else "?"
        seen = self.comebacks(tab)
        if len(seen) != 1:
            since = [c for c in tab.closes if c.at >= (self.signalled or 0)]
            closes = [f"{c.code} {c.reason!r} from {web_name(c.url)}" for c in since[:3]]
            return (f"{tab.name} was on {old}: {len(seen)} closes naming a delay since its "
                    f"SIGTERM, not one; closes since {closes}")  # fmt: skip
        come = seen[0]
        problems = []
        if come.close.code != 1012:
            problems.append(f"closed with {come.close.code} {come.close.reason!r}")
        if not 0 <= come.delay < self.window:
            problems.append(f"told to come back in {come.delay:.3f} s, outside the window "
                            f"[0, {self.window:g})")  # fmt: skip
        if come.away is None:
            problems.append(f"not back (told {come.delay:.3f} s)")
        elif come.back_url == old_ws or not come.delay <= come.away <= come.delay + BACK_LATE:
            problems.append(f"back on {web_name(come.back_url)} after {come.away:.2f} s, "
                            f"told {come.delay:.3f} s")  # fmt: skip
        return f"{tab.name} (was on {old}): " + "; ".join(problems) if problems else ""

    def summary(self, tabs: Sequence[Tab]) -> str:
        """One line for the report: who moved, how long they were away, how the old process
        ended."""
        if self.old is None or self.new is None:
            return "not done"
        name = web_name(self.old.ws)
        ready = f"{self.ready_after:.1f} s" if self.ready_after is not None else "never"
        head = (f"{name} replaced by {web_name(self.new.ws)} during {self.phase} (window "
                f"{self.window:g} s, replacement ready in {ready})")  # fmt: skip
        if self.signalled is None:
            return f"{head}; not switched"
        got = sum(1 for t in tabs if any(c.code == 1012 for c in t.server_closed))
        seen = [c for t in self.on_old for c in self.comebacks(t)]
        delays = [c.delay for c in seen]
        away = sorted(c.away for c in seen if c.away is not None)
        back = Counter(web_name(c.back_url) for c in seen if c.back_at is not None)
        exited = (f"{self.old.proc.returncode} {self.exited_after:.2f} s after SIGTERM"
                  if self.exited_after is not None else "not within "
                  f"{EXIT_WITHIN:g} s")  # fmt: skip
        parts = [head, f"{len(self.on_old)} of {len(tabs)} tabs on it, {got} got 1012"]
        if delays:
            parts.append(f"retry in {min(delays):.2f}-{max(delays):.2f} s")
        if away:
            parts.append(f"away min {away[0]:.2f} / median {statistics.median(away):.2f} / "
                         f"max {away[-1]:.2f} s, {len(away)} back: {dict(back)}")  # fmt: skip
        parts.append(f"{name} exited {exited}")
        return "; ".join(parts)

    def _finding(self, detail: str) -> None:
        """A finding of the restart itself (the checks of its outcome are ``check``'s)."""
        self.findings.append(Finding("restart", f"{self.phase} restart", detail))
