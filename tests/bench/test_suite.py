"""``notifier bench all --quick`` runs every scenario end to end. Figures are reported by the
benchmark and never asserted here; what is asserted is that each scenario measured something
real (every frame delivered, every request a 2xx, a ratio for every target)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from click.testing import CliRunner

from notifier.cli import main
from tests.services import unavailable

pytestmark = pytest.mark.timeout(300)


def test_the_quick_suite_measures_every_scenario_and_target() -> None:
    for binary in ("redis-server", "wrk"):
        if shutil.which(binary) is None:
            unavailable(f"{binary} is not installed (scripts/test installs it)")
    result = CliRunner().invoke(main, ["bench", "all", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["quick"] is True
    assert {f["feeds"] for f in report["fanout"]} == {"flat", "notification"}
    assert all(f["notifier"] > 0 and f["lua"] > 0 and f["pipelined"] > 0 for f in report["fanout"])
    # Notification fanout is also measured against the minimal aggregated script.
    assert [f["aggregated"] is not None and f["aggregated"] > 0 for f in report["fanout"]] == [
        f["feeds"] == "notification" for f in report["fanout"]
    ]
    assert [r["stored"] for r in report["read"]] == [100]
    for mine, raw in report["push"]:
        assert mine["lost"] == raw["lost"] == 0
    assert [c["name"] for c in report["connections"]] == ["notifier", "raw websockets"]
    assert report["peer"]["available"], report["peer"]["reason"]
    names = [t["name"] for t in report["targets"]]
    assert len(names) == 10 and any("Stream Framework" in n for n in names)
    assert any("aggregated Lua" in n for n in names)
    assert all(math.isfinite(t["ratio"]) and t["ratio"] > 0 for t in report["targets"])
