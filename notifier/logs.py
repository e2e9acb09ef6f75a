"""Log output of notifier's processes: one line per event, with time, process and level.

uvicorn configures only its own loggers; without this, notifier's own INFO lines went nowhere
and its warnings and errors reached stderr as bare messages, with no level to grep for.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send every logger that propagates to the root (notifier's, the drivers') to stderr."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
