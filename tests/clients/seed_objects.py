"""Makes real objects for schemathesis to aim at, and prints them as schemathesis dictionaries.

Without them every GET/PATCH/DELETE of /v1/cloud-gateways/{id}, /v1/cloud-gateway-pools/{id} and /v1/cloud-tenants/{id}
gets a random id and a 404, and never reaches Enterprise Manager. Standard library only (this runs
before any client is generated).

usage: python3 seed_objects.py BASE_URL ADMIN_KEY DOCUMENT   → TOML on stdout
"""

import json
import re
import sys
import time
import urllib.request
import uuid

BACKUP_SERVER = "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d"
TENANT = "urn:veeam:CloudTenant:5cf540af-512a-5ba8-9f12-77fba51207e0"
REPOSITORY = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101"
DEADLINE_S = 30


def call(base, key, method, path, body=None):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res)


def settled(base, key, task):
    deadline = time.monotonic() + DEADLINE_S
    while task["state"] == "running":
        if time.monotonic() > deadline:
            raise SystemExit(f"task {task['id']} still running after {DEADLINE_S} s")
        time.sleep(0.2)
        task = call(base, key, "GET", f"/v1/tasks/{task['id']}")
    if task["state"] != "succeeded":
        raise SystemExit(f"task {task['id']} {task['state']}: {task.get('message')}")
    return task


def main(base, key, document):
    with open(document) as f:
        paths = json.load(f)["paths"]
    tasks = [
        call(base, key, "POST", "/v1/cloud-gateways", {
            "backup_server_uid": BACKUP_SERVER,
            "server_host_name": f"st-{uuid.uuid4().hex[:10]}.example.local",
        })
        for _ in range(4)
    ]
    gateways = [settled(base, key, t)["resource"] for t in tasks]
    pool_task = call(base, key, "POST", "/v1/cloud-gateway-pools", {
        "backup_server_uid": BACKUP_SERVER,
        "name": f"st-pool-{uuid.uuid4().hex[:6]}",
        "cloud_gateway_uids": [gateways[0]["uid"]],
        "cloud_tenant_uids": [TENANT],
    })
    pool = settled(base, key, pool_task)["resource"]
    task_ids = [t["id"] for t in tasks] + [pool_task["id"]]

    # Bare guids only: the document types these path ids as `format: uuid`, so a `urn:veeam:…` UID
    # (which the gateway also takes) counts as invalid input there, and its 202 as a failure.
    tenant_task = call(base, key, "POST", "/v1/cloud-tenants", {
        "backup_server_uid": BACKUP_SERVER,
        "name": f"st-tenant-{uuid.uuid4().hex[:6]}",
        "password": f"st-{uuid.uuid4().hex}",
        "backup_resources": [{"name": "Cloud", "repository_uid": REPOSITORY, "quota_mb": 10240}],
    })
    tenant = settled(base, key, tenant_task)["resource"]
    task_ids.append(tenant_task["id"])
    quotas = [q["id"] for q in call(base, key, "GET", f"/v1/cloud-tenants/{tenant['id']}")["backup_resources"]]
    dictionaries = {
        "/v1/cloud-gateways/": [g["id"] for g in gateways],
        "/v1/cloud-gateway-pools/": [pool["id"]],
        "/v1/tasks/": task_ids,
        "/v1/cloud-tenants/": [tenant["id"], TENANT.rsplit(":", 1)[1]],
    }
    # A quota of that tenant, for DELETE …/backup-resources/{resource_id}: first, as the first
    # matching [[operations]] entry is the one that applies.
    # for DELETE …/backup-resources/{resource_id}.
    quota_path = "/v1/cloud-tenants/{id}/backup-resources/{resource_id}"
    if quota_path in paths:
        print(f"[dictionaries.quotas]\nvalues = {json.dumps(quotas)}\n")
        print(f"[dictionaries.quota_tenant]\nvalues = {json.dumps([tenant['id']])}\n")
        print("[[operations]]")
        print(f"include-path-regex = {json.dumps('^' + re.escape(quota_path) + '$')}")
        print('parameters = { "path.id" = { dictionary = "quota_tenant", probability = 0.8 }, '
              '"path.resource_id" = { dictionary = "quotas", probability = 0.8 } }\n')

    for n, (prefix, ids) in enumerate(dictionaries.items()):
        # The path parameter's name as the document spells it ({id} today; it may be renamed).
        names = sorted({m.group(1) for p in paths for m in [re.match(re.escape(prefix) + r"\{(\w+)\}", p)] if m})
        if len(names) != 1:
            continue
        print(f"[dictionaries.ids_{n}]\nvalues = {json.dumps(ids)}\n")
        print("[[operations]]")
        # Not the paths with a second id (a quota's): their own entry above pairs the ids.
        regex = '^' + re.escape(prefix + '{' + names[0] + '}') + '(/[a-z-]+)*$'
        print(f"include-path-regex = {json.dumps(regex)}")
        print(f'parameters = {{ "path.{names[0]}" = {{ dictionary = "ids_{n}", probability = 0.7 }} }}\n')


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3])
