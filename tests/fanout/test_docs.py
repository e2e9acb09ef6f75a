"""docs/fanout.md's Python example runs as printed (on the memory backend)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "fanout.md"


async def test_the_python_api_example_runs_and_does_what_its_comments_say(
    monkeypatch: Any,
) -> None:
    monkeypatch.delenv("NOTIFIER_CONFIG", raising=False)
    monkeypatch.delenv("NOTIFIER_STORAGE_URL", raising=False)
    monkeypatch.delenv("NOTIFIER_BROKER_URL", raising=False)
    example = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    body = example.replace("await manager.close()", "checks.append((app, manager, like))")
    source = "async def example(checks):\n" + textwrap.indent(body, "    ")
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOC), "exec"), namespace)
    checks: list[Any] = []
    await namespace["example"](checks)
    [(app, manager, like)] = checks
    try:
        await manager.join(30)
        assert await app.storage.get_activities([like.id]) == {}
        assert (await app.notification_feed("notification", "cy").counts()).unseen == 0
        assert await manager.following("bo") == []
    finally:
        await manager.close()
