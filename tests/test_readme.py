"""The README's Python example runs as printed and prints what its comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "dee and 2 others liked photo:1"
    assert lines[1:] == ["Counts(unseen=1, unread=1)", "Counts(unseen=0, unread=1)"]
