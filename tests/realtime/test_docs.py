"""docs/realtime.md documents every message type, close code and setting the code has."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from notifier.realtime import protocol
from notifier.realtime.settings import RealtimeSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "realtime.md").read_text()


def tags(union: object) -> list[str]:
    return [str(cls.__struct_config__.tag) for cls in typing.get_args(union)]


def test_every_message_type_is_documented() -> None:
    kinds = tags(protocol.ClientMessage) + tags(protocol.ServerFrame)
    assert len(kinds) == 12
    missing = [k for k in kinds if f"| `{k}` |" not in DOC]
    assert not missing


def test_every_close_code_is_documented() -> None:
    codes = {v for k, v in vars(protocol.CloseCode).items() if k.isupper()}
    missing = [c for c in codes if f"| {c} |" not in DOC]
    assert not missing


def test_every_setting_is_documented() -> None:
    names = [f"NOTIFIER_WS_{f.name.upper()}" for f in dataclasses.fields(RealtimeSettings)]
    missing = [n for n in names if n not in DOC]
    assert not missing
