"""Realtime delivery: the bus that carries per-user events from writers to connections."""

from notifier.realtime.bus import Bus, EventKind, NullBus, RecordingBus, UserEvent, events_for

__all__ = ["Bus", "EventKind", "NullBus", "RecordingBus", "UserEvent", "events_for"]
