"""Fanout: activities reach their followers' feeds through dramatiq workers.

``open_manager(config)`` gives the ``Manager`` (add / remove activities, follow / unfollow);
``notifier worker`` runs the workers. See docs/fanout.md.
"""

from notifier.fanout.followers import FollowCounts, FollowerLookup, StorageFollowers
from notifier.fanout.jobs import ChunkJob, FanoutJob, Priority
from notifier.fanout.manager import Manager
from notifier.fanout.policy import (
    MemoryPresence,
    Presence,
    PriorityPolicy,
    RecentlyActive,
    RedisPresence,
    Uniform,
)
from notifier.fanout.runtime import open_manager, run_worker
from notifier.fanout.settings import FanoutSettings
from notifier.fanout.timers import Expire, Timer, TimerJob

__all__ = [
    "ChunkJob",
    "Expire",
    "FanoutJob",
    "FanoutSettings",
    "FollowCounts",
    "FollowerLookup",
    "Manager",
    "MemoryPresence",
    "Presence",
    "Priority",
    "PriorityPolicy",
    "RecentlyActive",
    "RedisPresence",
    "StorageFollowers",
    "Timer",
    "TimerJob",
    "Uniform",
    "open_manager",
    "run_worker",
]
