"""The suite itself: collecting it is quick and leaves nothing running that keeps the process
alive (a module that starts an in-process fanout worker at import once made
``pytest --collect-only`` hang forever)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_collecting_the_whole_suite_finishes_in_seconds() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout


def test_a_process_that_never_closes_its_in_process_worker_still_exits() -> None:
    script = (
        "import asyncio\n"
        "from notifier.config import Config\n"
        "from notifier.fanout.runtime import open_manager\n"
        "async def main():\n"
        "    open_manager(Config())  # memory: worker threads in this process, never closed\n"
        "asyncio.run(main())\n"
        "print('exiting')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "exiting" in done.stdout, done.stderr[-2000:]
