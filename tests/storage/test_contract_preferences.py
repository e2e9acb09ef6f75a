"""The storage contract for users' preferences: every backend keeps and reads them alike."""

from __future__ import annotations

from notifier.preferences import Muted, Preferences
from notifier.storage.base import Storage


def muting(
    categories: tuple[str, ...] = (), verbs: tuple[str, ...] = (), actors: tuple[str, ...] = ()
) -> Preferences:
    return Preferences(
        muted=Muted(
            categories=frozenset(categories), verbs=frozenset(verbs), actors=frozenset(actors)
        )
    )


async def test_preferences_round_trip_every_list(storage: Storage) -> None:
    prefs = muting(("social", "digest"), ("like",), ("ana", "x.y@z=1+2-3_4"))
    await storage.put_preferences("bo", prefs)
    assert await storage.preferences(["bo"]) == {"bo": prefs}


async def test_users_without_preferences_are_absent(storage: Storage) -> None:
    await storage.put_preferences("bo", muting(verbs=("like",)))
    assert await storage.preferences(["ana", "bo", "cy"]) == {"bo": muting(verbs=("like",))}
    assert await storage.preferences([]) == {}


async def test_put_preferences_replaces_the_previous_ones(storage: Storage) -> None:
    await storage.put_preferences("bo", muting(("social",), ("like",), ("ana",)))
    await storage.put_preferences("bo", muting(actors=("cy",)))
    assert await storage.preferences(["bo"]) == {"bo": muting(actors=("cy",))}


async def test_default_preferences_are_forgotten(storage: Storage) -> None:
    await storage.put_preferences("bo", muting(verbs=("like",)))
    await storage.put_preferences("bo", Preferences())
    assert await storage.preferences(["bo"]) == {}
    await storage.put_preferences("cy", Preferences())  # nothing stored, nothing to forget
    assert await storage.preferences(["cy"]) == {}


async def test_preferences_of_many_users_in_one_call(storage: Storage) -> None:
    users = [f"u{n:04d}" for n in range(450)]  # more than one slice (Cassandra's IN), slots
    stored = {u: muting(actors=(f"a{n}",)) for n, u in enumerate(users) if n % 3 == 0}
    for user, prefs in stored.items():
        await storage.put_preferences(user, prefs)
    assert await storage.preferences([*users, users[0]]) == stored


async def test_preferences_are_per_user_and_keep_names_exactly(storage: Storage) -> None:
    await storage.put_preferences("bo", muting(actors=("Ana",)))
    await storage.put_preferences("Bo", muting(actors=("ana",)))
    found = await storage.preferences(["bo", "Bo"])
    assert found == {"bo": muting(actors=("Ana",)), "Bo": muting(actors=("ana",))}
