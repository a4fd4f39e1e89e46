// What a portal team writes in TypeScript with the types openapi-typescript generates from our
// document (./api.d.ts) and openapi-fetch: every path, body and answer below is checked against the
// document at compile time (tsc --strict, skipLibCheck false, so api.d.ts itself is checked too),
// then the compiled file runs against a live gateway.
//
// usage: node example.js BASE_URL API_KEY
import createClient from "openapi-fetch";
import type { paths } from "./api.js";

// The request body and the Task, named as a user would name them, straight from the document.
type CreateGateway = paths["/v1/cloud-gateways"]["post"]["requestBody"]["content"]["application/json"];
type Task = paths["/v1/tasks/{id}"]["get"]["responses"][200]["content"]["application/json"];

const SEEDED_BACKUP_SERVER = "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d";
const TASK_DEADLINE_MS = 30_000; // the simulated EM finishes a create in ~1.5 s
const POLL_MS = 250;

// The types must be strict enough to catch a user's mistakes; if the document degraded them to
// `any`/`unknown`, these lines would compile without error, and @ts-expect-error then fails the build.
// @ts-expect-error a field the document does not have
const _unknownField: CreateGateway = { backup_server_uid: "x", server_host_name: "y", colour: "red" };
// @ts-expect-error a Task's state is one of three words
const _badState: Task["state"] = "sleeping";
void _unknownField;
void _badState;

function fail(what: string): never {
  console.log(`FAIL ${what}`);
  process.exit(1);
}

async function main(baseUrl: string, key: string): Promise<void> {
  const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });

  const host = `gw-${Math.random().toString(36).slice(2, 12)}.example.local`;
  const body: CreateGateway = {
    backup_server_uid: SEEDED_BACKUP_SERVER,
    server_host_name: host,
    network_type: "direct",
    metadata: { order: "ts-example" },
  };
  const created = await client.POST("/v1/cloud-gateways", { body });
  if (created.response.status !== 202 || !created.data) {
    fail(`POST /v1/cloud-gateways ${host}: ${created.response.status} ${JSON.stringify(created.error)}`);
  }
  let task: Task = created.data;
  console.log(`ok   POST /v1/cloud-gateways ${host}: 202, task ${task.id} ${task.state}`);

  const deadline = Date.now() + TASK_DEADLINE_MS;
  while (task.state === "running" && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const polled = await client.GET("/v1/tasks/{id}", { params: { path: { id: task.id } } });
    if (!polled.data) fail(`GET /v1/tasks/${task.id}: ${polled.response.status} ${JSON.stringify(polled.error)}`);
    task = polled.data;
  }
  if (task.state !== "succeeded") fail(`task ${task.id} ended ${task.state} (want succeeded): ${task.message}`);
  if (task.metadata["order"] !== "ts-example") fail(`task ${task.id} lost its metadata: ${JSON.stringify(task.metadata)}`);
  console.log(`ok   GET /v1/tasks/{id}: task ${task.id} succeeded, resource ${task.resource?.uid}`);
}

const [baseUrl, key] = process.argv.slice(2);
if (!baseUrl || !key) fail("usage: node example.js BASE_URL API_KEY");
main(baseUrl, key).catch((e: unknown) => fail(`${e instanceof Error ? e.message : String(e)}`));
