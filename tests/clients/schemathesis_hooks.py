"""schemathesis hooks for tests/clients/run (loaded through schemathesis.toml).

Two things a schema cannot say, put right just before each call: Idempotency-Keys and dates that
must be in the future.

A portal sends a fresh `Idempotency-Key` for each operation. schemathesis draws header values from
a small space and reuses them across different requests, which the gateway answers, as its
contract says, with 422 "Idempotency-Key reused": a right answer that schemathesis would report as
"schema-valid request rejected". So a key that the document admits is swapped for a unique one
just before the call; a key the document does not admit (a negative test) is sent as drawn.
"""

import uuid
from datetime import datetime, timedelta, timezone

import schemathesis

HEADER = "idempotency-key"

# Dates that must lie in the future (a tenant's lease): JSON Schema cannot say "after now", so a
# past date drawn for a valid case would be refused (422) as it should be, and reported as a
# "schema-valid request rejected". A portal sends a future date; so does this.
FUTURE_ONLY = ("lease_expires_at",)


def _in_the_future(body):
    if not isinstance(body, dict):
        return
    for field in FUTURE_ONLY:
        value = body.get(field)
        if not isinstance(value, str):
            continue
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            continue  # not a date-time: a negative case, sent as drawn
        if at.tzinfo is not None and at <= datetime.now(timezone.utc) + timedelta(minutes=5):
            body[field] = (datetime.now(timezone.utc) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")


@schemathesis.hook
def before_call(context, case, kwargs):
    _in_the_future(case.body)
    headers = case.headers
    if not headers:
        return
    name = next((k for k in headers if k.lower() == HEADER), None)
    param = next((p for p in case.operation.headers if p.name.lower() == HEADER), None)
    if name is None or param is None:
        return
    value = headers[name]
    if isinstance(value, str) and param.is_valid(value):
        fresh = f"st-{uuid.uuid4()}"
        if param.is_valid(fresh):
            headers[name] = fresh
