"""``notifier import``: bulk follows and activities, bad lines reported, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from notifier.fanout.cli import fanout_cli
from notifier.fanout.importer import BadLine, import_file, load_state, state_path_for
from tests.fanout.conftest import Harness, close, memory_harness


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def activity(n: int, actor: str = "ana", **more: Any) -> dict[str, Any]:
    return {
        "type": "activity",
        "actor": actor,
        "verb": "post",
        "object": f"post:{n}",
        "time": f"2024-05-01T12:00:{n:02d}Z",
        **more,
    }


@pytest.fixture
async def harness() -> Any:
    made = await memory_harness(threads=2)
    yield made
    await close(made)


async def test_follows_then_activities_fan_out_and_bad_lines_are_reported_by_number(
    harness: Harness, tmp_path: Path
) -> None:
    source = write_lines(
        tmp_path / "data.jsonl",
        [
            {"type": "follow", "user": "bo", "target": "ana"},
            {"type": "follow", "user": "cy", "target": "ana"},
            "{not json",
            {"type": "follow", "user": "bad id!", "target": "ana"},
            "",
            activity(1, to=["notification:dee"]),
            activity(2, verb="teleport"),
            {"type": "poke", "user": "bo"},
            activity(3, foreign_id="post:3"),
        ],
    )
    bad: list[BadLine] = []
    progress: list[int] = []
    state = await import_file(
        harness.manager, source, batch=4, on_bad=bad.append, on_progress=progress.append
    )
    await harness.manager.join(30)

    assert [line.number for line in bad] == [3, 4, 7, 8]
    assert "user" in bad[1].message and "verb" in bad[2].message
    assert (state.follows, state.activities, state.bad, state.line, state.done) == (
        2,
        2,
        4,
        9,
        True,
    )
    assert sum(progress) == source.stat().st_size
    timelines = await harness.read_all("timeline", ["bo", "cy"])
    assert [len(ids) for ids in timelines.values()] == [2, 2]
    assert (await harness.counts_all("notification", ["dee"]))["dee"] == (1, 1, 1)


async def test_an_interrupted_import_resumes_after_the_last_finished_batch_without_duplicates(
    harness: Harness, tmp_path: Path
) -> None:
    lines: list[Any] = [{"type": "follow", "user": "bo", "target": "ana"}]
    lines += [activity(n) for n in range(1, 10)]
    source = write_lines(tmp_path / "data.jsonl", lines)

    first = await import_file(harness.manager, source, batch=3, stop_after_batches=1)
    assert (first.line, first.done) == (3, False)
    saved = state_path_for(source).read_bytes()
    # The second batch is written, then the process dies before saving its progress.
    await import_file(harness.manager, source, batch=3, stop_after_batches=1)
    state_path_for(source).write_bytes(saved)
    assert load_state(state_path_for(source)).line == 3

    final = await import_file(harness.manager, source, batch=3)
    await harness.manager.join(30)
    assert (final.line, final.done) == (10, True)
    assert (
        len(await harness.storage.read_flat(harness.config.feeds["timeline"], "bo", limit=50)) == 9
    )
    assert len(await harness.storage.read_flat(harness.config.feeds["user"], "ana", limit=50)) == 9
    # Done means done: running again imports nothing.
    again = await import_file(harness.manager, source, batch=3)
    assert again.activities == final.activities


def test_the_import_command_shows_bad_lines_and_exits_1(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "data.jsonl",
        [{"type": "follow", "user": "bo", "target": "ana"}, activity(1), {"type": "follow"}],
    )
    result = CliRunner().invoke(fanout_cli, ["import", str(source)], env={"NOTIFIER_CONFIG": ""})
    assert result.exit_code == 1, result.output
    assert f"{source}:3:" in result.output
    assert "1 follows, 1 activities, 1 bad lines (3 lines)" in result.output


def test_the_worker_command_refuses_memory_storage() -> None:
    result = CliRunner().invoke(
        fanout_cli, ["worker", "--processes", "1"], env={"NOTIFIER_STORAGE_URL": "memory://"}
    )
    assert result.exit_code == 2
    assert "needs Redis" in result.output
