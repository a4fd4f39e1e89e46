"""schemathesis hooks for tests/clients/run (loaded through schemathesis.toml).

A portal sends a fresh `Idempotency-Key` for each operation. schemathesis draws header values from
a small space and reuses them across different requests, which the gateway answers, as its
contract says, with 422 "Idempotency-Key reused": a right answer that schemathesis would report as
"schema-valid request rejected". So a key that the document admits is swapped for a unique one
just before the call; a key the document does not admit (a negative test) is sent as drawn.
"""

import uuid

import schemathesis

HEADER = "idempotency-key"


@schemathesis.hook
def before_call(context, case, kwargs):
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
