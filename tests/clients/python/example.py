"""What a portal team writes with the client openapi-python-client generates from our document.

It uses only the generated package (`em_gateway_client`): its typed models and its
`sync_detailed` functions, never raw HTTP. If the document lies about a route, a body or an
answer, this is where a user's code breaks, so this is where ours must break first.

usage: python example.py BASE_URL API_KEY   (with the generated package on PYTHONPATH)
"""

import importlib
import inspect
import pkgutil
import sys
import time
import uuid

import em_gateway_client
import em_gateway_client.api
from em_gateway_client import AuthenticatedClient
from em_gateway_client.models import CreateCloudGatewayRequest, Problem, TaskState, TaskView

SEEDED_BACKUP_SERVER = "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d"
TASK_DEADLINE_S = 30  # the simulated EM finishes a create in ~1.5 s
POLL_S = 0.25


def endpoint(method: str, path: str):
    """The generated module that sends METHOD PATH.

    Found by the request it builds rather than by its name: the generator names modules after
    operationIds, and those are being renamed. A user would look the route up the same way once.
    """
    found = []
    for info in pkgutil.walk_packages(em_gateway_client.api.__path__, "em_gateway_client.api."):
        module = importlib.import_module(info.name)
        if not hasattr(module, "sync_detailed"):
            continue
        source = inspect.getsource(module._get_kwargs)
        if f'"method": "{method.lower()}"' in source and f'"url": "{path}"' in source:
            found.append(module)
    if len(found) != 1:
        names = [m.__name__ for m in found]
        raise SystemExit(f"FAIL {len(found)} generated functions send {method} {path}: {names}")
    print(f"     {method} {path} is {found[0].__name__}")
    return found[0]


def main(base_url: str, key: str) -> None:
    client = AuthenticatedClient(base_url=base_url, token=key, timeout=10.0)
    create_gateway = endpoint("POST", "/v1/cloud-gateways")
    get_task = endpoint("GET", "/v1/tasks/{id}")

    # 1. Create a gateway: 202 with a typed Task.
    host = f"gw-{uuid.uuid4().hex[:12]}.example.local"
    created = create_gateway.sync_detailed(
        client=client,
        body=CreateCloudGatewayRequest(
            backup_server_uid=SEEDED_BACKUP_SERVER,
            server_host_name=host,
            network_type="direct",
        ),
    )
    expect(created.status_code == 202, f"create {host}: status {created.status_code} (want 202): {created.content!r}")
    task = created.parsed
    expect(isinstance(task, TaskView), f"create: answer parsed as {type(task).__name__} (want TaskView)")
    print(f"ok   POST /v1/cloud-gateways {host}: 202, task {task.id} {task.state}")

    # 2. Follow the task until EM settles it.
    deadline = time.monotonic() + TASK_DEADLINE_S
    while task.state == TaskState.RUNNING and time.monotonic() < deadline:
        time.sleep(POLL_S)
        polled = get_task.sync_detailed(task.id, client=client)
        expect(polled.status_code == 200, f"GET /v1/tasks/{task.id}: status {polled.status_code}: {polled.content!r}")
        task = polled.parsed
        expect(isinstance(task, TaskView), f"task: answer parsed as {type(task).__name__} (want TaskView)")
    expect(task.state == TaskState.SUCCEEDED, f"task {task.id} ended {task.state} (want succeeded): {task.message}")
    resource = task.resource.uid if task.resource else None
    print(f"ok   GET /v1/tasks/{{id}}: task {task.id} succeeded, resource {resource}")

    # 3. Invalid input: a 422 that reads as the typed Problem, naming each bad field.
    bad = create_gateway.sync_detailed(
        client=client,
        body=CreateCloudGatewayRequest(
            backup_server_uid=SEEDED_BACKUP_SERVER,
            server_host_name="not a host name!",
            network_type="nat",  # nat needs external_ip, which is left out
        ),
    )
    expect(bad.status_code == 422, f"invalid create: status {bad.status_code} (want 422): {bad.content!r}")
    problem = bad.parsed
    expect(isinstance(problem, Problem), f"invalid create: answer parsed as {type(problem).__name__} (want Problem)")
    fields = sorted(e.field for e in (problem.errors or []))
    expect(
        {"external_ip", "server_host_name"} <= set(fields),
        f"invalid create: errors name {fields} (want external_ip and server_host_name)",
    )
    print(f"ok   POST /v1/cloud-gateways invalid: 422 Problem {problem.title!r}, errors name {fields}")


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"FAIL {what}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
