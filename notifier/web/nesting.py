"""How deep a JSON body nests, measured before anything parses it.

msgspec's decoder recurses once per nesting level (even to skip a value), so a body of a few
kilobytes nested thousands deep raised ``RecursionError``: a 500 for what is the caller's
mistake. ``check_nesting`` finds the first container nested too deep with a scan of the raw
bytes (strings skipped by a C regex; only structural characters are looked at in Python) and
answers 422 naming the field, ``extra`` (or ``activities[3].extra``), where it happened.
Bodies with fewer brackets than the limit, the usual case, are not scanned at all.
"""

from __future__ import annotations

import re

from notifier.errors import InvalidInput

#: Strings (skipped whole) and the structural characters of JSON.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')
#: Nesting allowed outside ``extra`` (a batch's ``{"activities": [{...}]}`` is 3 deep).
_FRAME = 4


def check_nesting(raw: bytes, max_extra_depth: int) -> None:
    """Raise InvalidInput when ``extra`` nests deeper than ``max_extra_depth`` levels (the
    ``extra`` object itself is level 1), or anything else deeper than a request needs."""
    if raw.count(b"[") + raw.count(b"{") <= max_extra_depth:
        return
    kinds: list[int] = []  # b"{"[0] or b"["[0] per open container
    labels: list[str | int | None] = []  # per open container: the key (or index) now inside
    extra_at: int | None = None  # how many containers were open when extra's value opened
    for match in _TOKENS.finditer(raw):
        token = match.group()
        head = token[0]
        if head == 0x22:  # a string: a key when an object waits for one
            if kinds and kinds[-1] == 0x7B and labels[-1] is None:
                labels[-1] = token[1:-1].decode("utf-8", "replace")
        elif head in (0x7B, 0x5B):  # { [
            if extra_at is None and labels and labels[-1] == "extra" and kinds[-1] == 0x7B:
                extra_at = len(kinds)
            depth = len(kinds) + 1
            inside = depth - extra_at if extra_at is not None else 0
            if inside > max_extra_depth:
                raise InvalidInput(_field(labels[:extra_at]), f"nested deeper than "
                                   f"{max_extra_depth} levels")  # fmt: skip
            if extra_at is None and depth > _FRAME:
                raise InvalidInput(_field(labels), f"nested deeper than a request allows "
                                   f"({_FRAME} levels outside extra)")  # fmt: skip
            kinds.append(head)
            labels.append(None if head == 0x7B else 0)
        elif head in (0x7D, 0x5D):  # } ]
            if not kinds:
                return  # malformed: the decoder says so
            kinds.pop()
            labels.pop()
            if extra_at is not None and len(kinds) <= extra_at:
                extra_at = None
        elif kinds:  # a comma: the next key, or the next index
            labels[-1] = labels[-1] + 1 if kinds[-1] == 0x5B else None  # type: ignore[operator]


def _field(labels: list[str | int | None]) -> str:
    """``["activities", 3, "extra"]`` → ``activities[3].extra``: the path down to its last
    key (``["group_ids", 0, 0]`` names ``group_ids``)."""
    keys = [i for i, label in enumerate(labels) if isinstance(label, str)]
    name = ""
    for label in labels[: keys[-1] + 1] if keys else ():
        if isinstance(label, int):
            name += f"[{label}]"
        elif label is not None:
            name += f".{label}" if name else label
    return name or "body"
