"""The widget's files (the checkout's ``static/`` directory) served at ``/static``.

The widget is plain files with no build step, so the server that speaks the API can also
serve the script that speaks to it: ``<script type="module" src=".../static/notifier.js">``.
The directory is found next to the ``notifier`` package, i.e. in the checkout notifier runs
from (``scripts/run`` and ``scripts/test`` install it in editable mode). A wheel does not
carry it: then ``/static`` is not mounted, a warning says so, and the files can be served by
any web server instead (the widget works cross-origin from an allowed origin).
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository root when notifier runs from a checkout (editable install)."""
STATIC_DIR = CHECKOUT / "static"
TEMPLATES_DIR = CHECKOUT / "templates"
STATIC_PATH = "/static"


def static_mount(directory: Path = STATIC_DIR) -> Mount | None:
    """``/static`` serving ``directory``, or None (with a warning) when it is not there."""
    if not (directory / "notifier.js").is_file():
        log.warning("widget files not found in %s: /static is not served", directory)
        return None
    return Mount(STATIC_PATH, app=StaticFiles(directory=directory), name="static")
