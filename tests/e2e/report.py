"""What a run is told (``Options``) and what it tells (``Report`` of ``Finding``\\ s).

A finding's ``kind`` separates the suspects, so a failure says where to look first:

- ``client≠http``: a websocket client's view differs from an HTTP read of the same range
  (the realtime path: a frame missing, stale or not retracted), a server bug unless the
  client broke a protocol rule, which ``protocol`` findings would show;
- ``http≠model``: storage or fanout disagrees with the documented semantics (or the model is
  wrong: the detail lists the operations that touched the item);
- ``http≠http``: two web processes answer the same read differently;
- ``client≠model``: a client differs from the model where it agrees with HTTP;
- ``response``: an API answer differs from what the docs and the model say;
- ``protocol``, ``close-1011``, ``5xx``, ``log-error``, ``dead-process``: as named;
- ``restart``: a web process restarted as a deploy does (deploy.py) did not stop as
  docs/operations.md says, or its clients were not told when to come back, or did not;
- ``harness``: the test's own code failed (a bug of the test, not of notifier).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.world import Size

KINDS = {
    "harness": "the test's own code failed (not notifier)",
    "dead-process": "a server or worker process exited",
    "restart": "a restarted web process or its clients did not do what docs/operations.md "
    "(Deploys) says",
    "5xx": "the API answered 5xx (or the connection failed)",
    "close-1011": "the server closed websockets with 1011 (internal error)",
    "protocol": "a frame or close breaking the websocket protocol (rules in tests/e2e/client.py)",
    "response": "an API answer differs from the docs / the model",
    "http≠http": "web processes answer the same read differently",
    "client≠http": "a websocket client's view differs from an HTTP read of the same range, "
    "through the process it is connected to (realtime bug)",
    "http≠model": "what the API serves differs from the model of docs/concepts.md",
    "client≠model": "a client differs from the model where it agrees with HTTP",
    "log-error": "ERROR lines in server / worker logs",
}
SHOWN = 15


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.detail}"


@dataclass
class Options:
    """How big a run is and how long it waits."""

    seed: int
    size: Size = field(default_factory=Size)
    label: str = "redis"
    concurrency: int = 8
    drop_every: float = 8.0
    """Mean seconds between two drops of one tab."""
    pace: float = 8.0
    """Seconds an add phase takes at least (its operations are spread over them, so tabs
    drop and resume while things happen); other phases a third of it."""
    quiesce_timeout: float = 30.0
    settle: float = 5.0
    """A mismatch unchanged this long at a quiet point is a divergence (fanout is done)."""
    converge_timeout: float = 20.0
    replay: str = ""
    """How to run this world again (default: the pytest command for ``label``)."""
    flat_overshoot_ok: bool = False
    """Cassandra: a flat feed may be one id over max_length until its next write."""
    restart_during: str | None = None
    """The phase (``r2-add``) during which one web process is restarted as a deploy does it
    (deploy.py); None: no restart."""


@dataclass
class Report:
    options: Options
    findings: list[Finding]
    notes: list[str]
    stats: dict[str, Any]

    @property
    def failed(self) -> bool:
        return bool(self.findings)

    def text(self) -> str:
        o = self.options
        replay = o.replay or f"NOTIFIER_E2E_SEED={o.seed} .venv/bin/pytest tests/e2e -k {o.label}"
        lines = [f"e2e {o.label}: seed={o.seed}  (replay: {replay})"]
        lines += [f"  {k}: {v}" for k, v in self.stats.items()]
        by_kind: dict[str, list[Finding]] = defaultdict(list)
        for finding in self.findings:
            by_kind[finding.kind].append(finding)
        for kind in sorted(by_kind, key=list(KINDS).index):
            found = by_kind[kind]
            lines.append(f"\n{len(found)} x {kind}: {KINDS[kind]}")
            lines += [f"  - {f.where}: {f.detail}" for f in found[:SHOWN]]
            if len(found) > SHOWN:
                lines.append(f"  ... and {len(found) - SHOWN} more")
        if self.notes:
            lines.append("\nnotes (not failures):")
            lines += [f"  - {n}" for n in self.notes[:20]]
        return "\n".join(lines)
