"""Fuzz the API from its own OpenAPI document (schemathesis): no 5xx, and every response
(status code, content type, headers, body) matches what the document declares.

One check is left out: ``positive_data_acceptance`` (every schema-valid request must succeed).
Some rules depend on configuration and stored state, not on the request's shape: the verb must
be registered, ``time`` must lie in 1970-4253, ``extra`` must fit ``max_extra_bytes``, a feed
group must exist. Those answer 422 / 404 with the field named, which the other checks verify.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from notifier.config import Config
from notifier.storage.memory import MemoryStorage
from notifier.web.app import create_app
from notifier.web.wiring import build_services
from tests.services import IN_CI
from tests.web.conftest import API_KEY, server_settings

# Rate limits out of the way: hypothesis sends bursts a real client would not.
FUZZ_SETTINGS = server_settings(
    NOTIFIER_KEY_RATE="1000000", NOTIFIER_KEY_BURST="1000000",
    NOTIFIER_USER_RATE="1000000", NOTIFIER_USER_BURST="1000000",
    NOTIFIER_AUTH_FAIL_RATE="1000000", NOTIFIER_AUTH_FAIL_BURST="1000000",
)  # fmt: skip
SERVICES = build_services(Config(), FUZZ_SETTINGS, storage=MemoryStorage())
atexit.register(lambda: asyncio.run(SERVICES.fanout.close()))
TOKEN, _ = SERVICES.tokens.issue("fuzzer", 3600)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(SERVICES))


@schema.parametrize()
# In CI the examples are derandomized (the same every run: a failure there is reproducible
# and never a coin toss); locally every run explores new ones.
@settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=IN_CI
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    credential = TOKEN if case.path.startswith("/v1/me/") else API_KEY
    case.call_and_validate(
        headers={"Authorization": f"Bearer {credential}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


class ApiWorkflow(schema.as_state_machine()):  # type: ignore[misc]
    """Stateful fuzz: sequences of calls that follow the document's OpenAPI links (add an
    activity, then remove it or read its actor's feed; follow, then list or unfollow; read a
    feed, then mark it), with generated data between the linked values."""

    def before_call(self, case: schemathesis.Case) -> None:
        # Rules of configuration and time that no schema can state (a registered verb, a
        # time near now, known feed groups): without them almost every activity is a 422 and
        # the links from a stored activity are never walked.
        # Only in a valid case: a negative one must reach the server as generated (dropping its
        # invalid `time` would make it valid, and its acceptance a false failure).
        negative = case.meta is not None and case.meta.generation.mode.is_negative
        if (
            case.operation.label == "POST /v1/activities"
            and isinstance(case.body, dict)
            and not negative
        ):
            case.body.update(verb="like", to=[])
            case.body.pop("time", None)

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {API_KEY}"}}

    def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
        case.validate_response(
            response, excluded_checks=[schemathesis.checks.positive_data_acceptance]
        )


TestApiWorkflow = ApiWorkflow.TestCase
TestApiWorkflow.settings = settings(
    max_examples=50, stateful_step_count=6, deadline=None,
    suppress_health_check=list(HealthCheck), derandomize=IN_CI,
)  # fmt: skip
