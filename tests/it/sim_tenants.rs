//! `em-sim`'s Cloud Connect tenants, storage quotas and repositories (em-api.md §16) over raw
//! HTTP, in XML and JSON: what a client of EM would see.

use std::time::Duration;

use em_gateway::sim::body::{Element, parse_xml};
use em_gateway::sim::{RunningSim, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const NS: &str = "http://www.veeam.com/ent/v1.0";
const ACME_ID: &str = "5cf540af-512a-5ba8-9f12-77fba51207e0";
const GLOBEX_ID: &str = "3f2a1c10-0000-4000-8000-00000000e902";
const ACME_QUOTA: &str = "3f2a1c10-0000-4000-8000-00000000e911";
const REPO01: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101";
const SOBR: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a102";
const NEARLY_FULL: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a103";
const REPO_ON_VBR02: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a201";
const WAN01: &str = "urn:veeam:WanAccelerator:3f2a1c10-0000-4000-8000-00000000aa01";
const WAN02: &str = "urn:veeam:WanAccelerator:3f2a1c10-0000-4000-8000-00000000aa02";
const GB: i64 = 1024 * 1024 * 1024;
/// Every test's tenant password: no answer may ever contain it.
const SECRET: &str = "Pa55-ultra-SECRET-7781";

/// The children of the tenant entity, in §16.2's order (no pools, failover flag not set).
const ENTITY_ORDER: &[&str] = &[
    "Links",
    "Password",
    "Description",
    "Enabled",
    "LeaseOptions",
    "Resources",
    "LastResult",
    "LastActive",
    "ComputeResources",
    "ThrottlingEnabled",
    "ThrottlingSpeedLimit",
    "ThrottlingSpeedUnit",
    "PublicIpCount",
    "BackupCount",
    "ReplicaCount",
    "MaxConcurrentTasks",
    "WorkStationBackupCount",
    "ServerBackupCount",
    "BackupProtectionEnabled",
    "BackupProtectionPeriod",
    "TenantType",
];

/// One logon session on a simulator, and every answer it got (to search for passwords).
struct Em<'a> {
    sim: &'a RunningSim,
    token: String,
    seen: std::sync::Mutex<Vec<String>>,
}

impl<'a> Em<'a> {
    async fn logon(sim: &'a RunningSim) -> Em<'a> {
        Em {
            sim,
            token: raw_logon(sim).await,
            seen: Default::default(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        json: bool,
    ) -> (StatusCode, String) {
        let kind = if json {
            "application/json"
        } else {
            "application/xml"
        };
        let mut req = http()
            .request(method, format!("{}{path}", self.sim.api_url))
            .header("X-RestSvcSessionId", &self.token);
        if json {
            req = req.header("Accept", kind);
        }
        if let Some(body) = body {
            req = req.header("Content-Type", kind).body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        self.seen.lock().unwrap().push(text.clone());
        (status, text)
    }

    async fn xml(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, String) {
        self.send(method, path, body, false).await
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self
            .send(method, path, body.map(|b| b.to_string()), true)
            .await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str) -> Element {
        let (status, text) = self.xml(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {text}");
        parse_xml(&text).unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, value) = self.json(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {value}");
        value
    }

    /// A write that must be accepted: its task, `Running`.
    async fn accepted(&self, method: Method, path: &str, body: String) -> Element {
        let (status, text) = self.xml(method, path, Some(body)).await;
        assert_eq!(status, 202, "{path}: {text}");
        let task = parse_xml(&text).unwrap();
        assert_eq!(task.child_text("State"), Some("Running"), "{text}");
        task
    }

    async fn finished(&self, task: &Element) -> Task {
        let id = task.child_text("TaskId").unwrap().to_string();
        let element = eventually("the task to finish", Duration::from_secs(10), || async {
            let task = self.get(&format!("/tasks/{id}")).await;
            (task.child_text("State") == Some("Finished")).then_some(task)
        })
        .await;
        Task(element)
    }

    async fn run(&self, method: Method, path: &str, body: String) -> Task {
        let task = self.accepted(method, path, body).await;
        self.finished(&task).await
    }

    fn answers(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

struct Task(Element);

impl Task {
    fn operation(&self) -> &str {
        self.0.child_text("Operation").unwrap_or_default()
    }

    fn succeeded(&self) -> bool {
        self.0.child("Result").and_then(|r| r.attr("Success")) == Some("true")
    }

    fn message(&self) -> String {
        self.0
            .child("Result")
            .and_then(|r| r.child_text("Message"))
            .unwrap_or_default()
            .to_string()
    }

    /// The `Related` link: (Type, Href, Name).
    fn related(&self) -> Option<(String, String, String)> {
        self.0.child("Links")?.children.iter().find_map(|l| {
            (l.attr("Rel") == Some("Related")).then(|| {
                (
                    l.attr("Type").unwrap_or_default().to_string(),
                    l.attr("Href").unwrap_or_default().to_string(),
                    l.attr("Name").unwrap_or_default().to_string(),
                )
            })
        })
    }

    /// The new object's path below `/api`, from the `Related` link.
    fn related_path(&self, sim: &RunningSim) -> String {
        let (_, href, _) = self.related().expect("a Related link");
        href.strip_prefix(&sim.api_url)
            .unwrap()
            .trim_end_matches("?format=Entity")
            .to_string()
    }
}

fn names(e: &Element) -> Vec<&str> {
    e.children.iter().map(|c| c.name.as_str()).collect()
}

fn create(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><CreateCloudTenantSpec xmlns="{NS}">{inner}</CreateCloudTenantSpec>"#
    )
}

/// A create spec's body: `head` after `Name`/`Password`, `tail` after `BackupServerUid`.
fn tenant(name: &str, head: &str, tail: &str) -> String {
    create(&format!(
        "<Name>{name}</Name><Password>{SECRET}</Password>{head}<BackupServerUid>{VBR01}</BackupServerUid>{tail}"
    ))
}

fn backup_resource(name: &str, repository: &str, quota_mb: i64, extra: &str) -> String {
    format!(
        "<BackupResource><Name>{name}</Name><RepositoryUid>{repository}</RepositoryUid><QuotaMb>{quota_mb}</QuotaMb>{extra}</BackupResource>"
    )
}

fn resources(items: &[String]) -> String {
    format!("<Resources>{}</Resources>", items.concat())
}

fn resource_spec(name: &str, repository: &str, quota_mb: i64, extra: &str) -> String {
    format!(
        r#"<CreateCloudTenantResourceSpec xmlns="{NS}"><Name>{name}</Name><RepositoryUid>{repository}</RepositoryUid><QuotaMb>{quota_mb}</QuotaMb>{extra}</CreateCloudTenantResourceSpec>"#
    )
}

fn put(inner: &str) -> String {
    format!(r#"<CloudTenant xmlns="{NS}" Type="CloudTenant">{inner}</CloudTenant>"#)
}

fn standalone(name: &str) -> String {
    format!(
        "<TenantType><StandaloneTenant><TenantCredentials><Username>{name}</Username></TenantCredentials></StandaloneTenant></TenantType>"
    )
}

async fn control(sim: &RunningSim, method: Method, path: &str, body: Value) -> (u16, Value) {
    let base = sim.api_url.trim_end_matches("/api");
    let resp = http()
        .request(method, format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn set_used(sim: &RunningSim, tenant: &str, quota: &str, used_mb: i64) {
    let (status, body) = control(
        sim,
        Method::PUT,
        &format!("/_sim/tenants/{tenant}/resources/{quota}/used"),
        json!({"used_mb": used_mb}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A repository's `FreeSpace` in bytes, as its entity says.
async fn free_space(em: &Em<'_>, repository: &str) -> i64 {
    let id = repository.rsplit(':').next().unwrap();
    let entity = em
        .get_json(&format!("/repositories/{id}?format=Entity"))
        .await;
    entity["FreeSpace"].as_i64().unwrap()
}

/// Creates a tenant and returns its guid.
async fn new_tenant(em: &Em<'_>, body: String) -> String {
    let task = em.run(Method::POST, "/cloud/tenants", body).await;
    assert!(task.succeeded(), "{}", task.message());
    let path = task.related_path(em.sim);
    path.rsplit('/').next().unwrap().to_string()
}

fn sim_with(tweak: impl FnOnce(&mut SimConfig)) -> RunningSim {
    spawn_sim(tweak)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn seeded_tenants_read_in_xml_and_json_in_entity_order() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;

    let refs = em.get("/cloud/tenants").await;
    assert_eq!(refs.name, "EntityReferences");
    let acme = &refs.children[0];
    assert_eq!(acme.attr("Type"), Some("CloudTenantReference"));
    assert_eq!(acme.attr("UID"), Some(ACME));
    assert_eq!(acme.attr("Name"), Some("acme"));

    let entity = em
        .get(&format!("/cloud/tenants/{ACME_ID}?format=Entity"))
        .await;
    assert_eq!(entity.name, "CloudTenant");
    assert_eq!(names(&entity), ENTITY_ORDER, "§16.2's order, no VmCount");
    let (_, text) = em
        .xml(
            Method::GET,
            &format!("/cloud/tenants/{ACME_ID}?format=Entity"),
            None,
        )
        .await;
    assert!(text.contains("<Password />"), "{text}");
    assert!(
        text.contains(r#"<LeaseOptions Enabled="false" />"#),
        "{text}"
    );
    assert!(
        text.contains("<LastActive>1753-01-01T00:00:00Z</LastActive>"),
        "{text}"
    );
    assert!(text.contains("<TenantType><StandaloneTenant><TenantCredentials><Username>acme</Username></TenantCredentials></StandaloneTenant></TenantType>"), "{text}");
    let quota = &entity.child("Resources").unwrap().children[0];
    assert_eq!(quota.attr("Id"), Some(ACME_QUOTA));
    assert_eq!(
        names(quota),
        ["RepositoryQuota"],
        "no Links inside the entity"
    );
    let rq = quota.child("RepositoryQuota").unwrap();
    assert_eq!(
        names(rq),
        ["DisplayName", "RepositoryUid", "Quota", "UsedQuota"]
    );
    assert_eq!(rq.child_text("RepositoryUid"), Some(REPO01));
    assert_eq!(rq.child_text("Quota"), Some("102400"));
    assert_eq!(rq.child_text("UsedQuota"), Some("20480"));
    for (name, value) in [
        ("LastResult", "Success"),
        ("ThrottlingEnabled", "false"),
        ("ThrottlingSpeedLimit", "1"),
        ("ThrottlingSpeedUnit", "Mbps"),
        ("PublicIpCount", "0"),
        ("MaxConcurrentTasks", "1"),
        ("BackupProtectionEnabled", "false"),
        ("BackupProtectionPeriod", "1"),
    ] {
        assert_eq!(entity.child_text(name), Some(value), "{name}");
    }

    // Every link leads to a route the simulator serves.
    let links = &entity.child("Links").unwrap().children;
    let rels: Vec<&str> = links.iter().filter_map(|l| l.attr("Rel")).collect();
    assert_eq!(
        rels,
        [
            "Up",
            "Alternate",
            "Edit",
            "Down",
            "Create",
            "Delete",
            "Down"
        ]
    );
    for link in links {
        let href = link.attr("Href").unwrap();
        let path = href.strip_prefix(&sim.api_url).expect("an absolute Href");
        let (status, _) = em.xml(Method::GET, path, None).await;
        assert_eq!(status, 200, "{href}");
    }

    // JSON: the same entity by EM's JSON rules.
    let json = em
        .get_json(&format!("/cloud/tenants/{ACME_ID}?format=Entity"))
        .await;
    assert_eq!(json["Password"], "");
    assert_eq!(json["LeaseOptions"], json!({"Enabled": false}));
    assert_eq!(
        json["Resources"]["CloudTenantResources"][0]["RepositoryQuota"]["Quota"],
        102400
    );
    assert_eq!(
        json["TenantType"]["StandaloneTenant"]["TenantCredentials"]["Username"],
        "acme"
    );
    assert_eq!(json["UID"], ACME);
    assert!(json.get("CloudGatewayPools").is_none());
    assert!(json.get("FailoverToOthersGatewaysIfFail").is_none());
    assert!(json.get("VmCount").is_none());
    let globex = em
        .get_json(&format!("/cloud/tenants/{GLOBEX_ID}?format=Entity"))
        .await;
    assert_eq!(globex["Resources"], json!({"CloudTenantResources": []}));
    let (_, text) = em
        .xml(
            Method::GET,
            &format!("/cloud/tenants/{GLOBEX_ID}?format=Entity"),
            None,
        )
        .await;
    assert!(text.contains("<Resources />"), "{text}");
    let list = em.get_json("/cloud/tenants?format=Entity").await;
    assert_eq!(list["CloudTenants"].as_array().unwrap().len(), 2);
    let reference = em.get_json(&format!("/cloud/tenants/{ACME_ID}")).await;
    assert_eq!(reference["Type"], "CloudTenantReference");

    // The existing pool read still answers, and unknown tenants are 404.
    let pools = em
        .get(&format!("/cloud/tenants/{ACME_ID}/gatewayPools"))
        .await;
    assert_eq!(pools.name, "EntityReferences");
    let (status, _) = em
        .xml(
            Method::GET,
            "/cloud/tenants/00000000-0000-4000-8000-000000000009",
            None,
        )
        .await;
    assert_eq!(status, 404);
    sim.stop().await;
}

#[tokio::test]
async fn a_new_tenant_shows_only_once_its_task_is_finished_and_only_in_its_session() {
    let sim = sim_with(|c| {
        c.task_time = Duration::from_millis(200);
        c.operation_finished_time = Duration::from_millis(1500);
    });
    let em = Em::logon(&sim).await;
    let other = Em::logon(&sim).await;
    let body = tenant(
        "ABC Company",
        &format!(
            "<Enabled>true</Enabled><LeaseExpirationDate>2099-12-31T00:00:00</LeaseExpirationDate>{}",
            resources(&[backup_resource("Cloud Repository", REPO01, 307200, "")])
        ),
        "<MaxConcurrentTasks>2</MaxConcurrentTasks><TenantType>Standalone</TenantType>",
    );
    let task = em.accepted(Method::POST, "/cloud/tenants", body).await;
    assert_eq!(task.child_text("Operation"), Some("CreateCloudTenant"));
    let id = task.child_text("TaskId").unwrap().to_string();

    // Tasks live in their session.
    let (status, text) = other.xml(Method::GET, &format!("/tasks/{id}"), None).await;
    assert_eq!(status, 500);
    assert!(text.contains("in current rest session"), "{text}");
    let others = other.get("/tasks").await;
    assert!(others.children.is_empty());

    let listed = |list: Element| {
        list.children
            .iter()
            .any(|r| r.attr("Name") == Some("ABC Company"))
    };
    assert!(!listed(em.get("/cloud/tenants").await), "not while Running");
    let during = eventually(
        "the task to show OperationFinished",
        Duration::from_secs(10),
        || async {
            let t = em.get(&format!("/tasks/{id}")).await;
            (t.child_text("State") == Some("OperationFinished")).then_some(Task(t))
        },
    )
    .await;
    assert!(
        !listed(em.get("/cloud/tenants").await),
        "not while OperationFinished"
    );
    let path = during.related_path(&sim);
    let (status, _) = em.xml(Method::GET, &path, None).await;
    assert_eq!(status, 404, "EM has not collected it yet");

    let done = em.finished(&task).await;
    assert!(done.succeeded(), "{}", done.message());
    let (kind, href, name) = done.related().unwrap();
    assert_eq!(kind, "CloudTenant");
    assert_eq!(name, "ABC Company");
    assert!(href.ends_with("?format=Entity"), "{href}");
    assert!(listed(em.get("/cloud/tenants").await));
    let entity = em.get(&format!("{path}?format=Entity")).await;
    assert_eq!(
        entity
            .child("LeaseOptions")
            .and_then(|l| l.attr("ExpirationDate")),
        Some("2099-12-31T00:00:00Z"),
        "normalised to UTC"
    );
    assert_eq!(entity.child_text("MaxConcurrentTasks"), Some("2"));
    let quotas = &entity.child("Resources").unwrap().children;
    assert_eq!(quotas.len(), 1, "the quota shows with its tenant");

    // A quota added later shows once its own task is Finished.
    let add = em
        .accepted(
            Method::POST,
            &format!("{path}/resources"),
            resource_spec("Second", NEARLY_FULL, 2048, ""),
        )
        .await;
    let add_id = add.child_text("TaskId").unwrap().to_string();
    let during = eventually(
        "the quota's task to show OperationFinished",
        Duration::from_secs(10),
        || async {
            let t = em.get(&format!("/tasks/{add_id}")).await;
            (t.child_text("State") == Some("OperationFinished")).then_some(Task(t))
        },
    )
    .await;
    assert_eq!(em.get(&format!("{path}/resources")).await.children.len(), 1);
    let quota_path = during.related_path(&sim);
    assert_eq!(em.xml(Method::GET, &quota_path, None).await.0, 404);
    assert!(em.finished(&add).await.succeeded());
    assert_eq!(em.get(&format!("{path}/resources")).await.children.len(), 2);
    assert_eq!(em.xml(Method::GET, &quota_path, None).await.0, 200);
    sim.stop().await;
}

#[tokio::test]
async fn json_creates_with_em_list_shapes_and_a_fresh_tenant_has_ems_defaults() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    // A pool to join.
    let gw = em
        .run(
            Method::POST,
            "/cloud/gateways",
            format!(
                r#"<CreateCloudGatewaySpec xmlns="{NS}"><ServerHostName>gw1.example</ServerHostName><NetworkType>Direct</NetworkType><BackupServerUid>{VBR01}</BackupServerUid></CreateCloudGatewaySpec>"#
            ),
        )
        .await;
    let gw_uid = format!(
        "urn:veeam:CloudGateway:{}",
        gw.related_path(&sim).rsplit('/').next().unwrap()
    );
    let pool = em
        .run(
            Method::POST,
            "/cloud/gatewayPools",
            format!(
                r#"<CreateCloudGatewayPoolSpec xmlns="{NS}"><Name>EU</Name><CloudGateways><CloudGatewayUid>{gw_uid}</CloudGatewayUid></CloudGateways><BackupServerUid>{VBR01}</BackupServerUid></CreateCloudGatewayPoolSpec>"#
            ),
        )
        .await;
    let pool_id = pool
        .related_path(&sim)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let pool_uid = format!("urn:veeam:CloudGatewayPool:{pool_id}");

    let (status, task) = em
        .json(
            Method::POST,
            "/cloud/tenants",
            Some(json!({
                "Name": "json-tenant", "Description": "from JSON", "Password": SECRET,
                "Resources": {"BackupResources": [
                    {"Name": "Cloud", "RepositoryUid": REPO01, "QuotaMb": 2048, "WanAcceleratorUid": ""},
                    {"Name": "Fast", "RepositoryUid": NEARLY_FULL, "QuotaMb": 4096, "WanAcceleratorUid": WAN01}
                ]},
                "ThrottlingEnabled": true, "ThrottlingSpeedLimit": 10, "ThrottlingSpeedUnit": "MBps",
                "backupServerUid": VBR01, "BackupProtectionEnabled": true, "BackupProtectionPeriod": 7,
                "TenantType": "Standalone",
                "CloudGatewayPools": {"CloudGatewayPoolUids": [pool_uid]},
                "FailoverToOthersGatewaysIfFail": true
            })),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(task["Operation"], "CreateCloudTenant");
    let task = em
        .finished(
            &parse_xml(&format!(
                r#"<Task xmlns="{NS}"><TaskId>{}</TaskId></Task>"#,
                task["TaskId"].as_str().unwrap()
            ))
            .unwrap(),
        )
        .await;
    assert!(task.succeeded(), "{}", task.message());
    let path = task.related_path(&sim);
    let t = em.get_json(&format!("{path}?format=Entity")).await;
    assert_eq!(t["Description"], "from JSON");
    assert_eq!(t["ThrottlingEnabled"], true);
    assert_eq!(t["ThrottlingSpeedUnit"], "MBps");
    assert_eq!(t["BackupProtectionPeriod"], 7);
    assert_eq!(
        t["CloudGatewayPools"],
        json!({"CloudGatewayPoolUids": [pool_uid]})
    );
    assert_eq!(t["FailoverToOthersGatewaysIfFail"], true);
    let quotas = t["Resources"]["CloudTenantResources"].as_array().unwrap();
    assert_eq!(quotas.len(), 2);
    assert!(
        quotas[0]["RepositoryQuota"]
            .get("WanAcceleratorUid")
            .is_none(),
        "empty = none"
    );
    assert_eq!(quotas[1]["RepositoryQuota"]["WanAcceleratorUid"], WAN01);
    let (_, xml) = em
        .xml(Method::GET, &format!("{path}?format=Entity"), None)
        .await;
    let entity = parse_xml(&xml).unwrap();
    let mut order = ENTITY_ORDER.to_vec();
    order.extend(["CloudGatewayPools", "FailoverToOthersGatewaysIfFail"]);
    assert_eq!(names(&entity), order);
    // The pool knows its tenant, and the tenant its pool.
    let members = em
        .get(&format!("/cloud/gatewayPools/{pool_id}/tenants"))
        .await;
    assert_eq!(members.children.len(), 1);
    let pools = em.get(&format!("{path}/gatewayPools")).await;
    assert_eq!(pools.children[0].attr("UID"), Some(pool_uid.as_str()));

    // A fresh tenant: EM's defaults, the default description.
    let fresh = new_tenant(&em, tenant("fresh", "", "")).await;
    let t = em
        .get_json(&format!("/cloud/tenants/{fresh}?format=Entity"))
        .await;
    assert_eq!(t["Enabled"], true);
    assert_eq!(t["ThrottlingSpeedLimit"], 1);
    assert_eq!(t["ThrottlingSpeedUnit"], "Mbps");
    assert_eq!(t["PublicIpCount"], 0);
    assert_eq!(t["MaxConcurrentTasks"], 1);
    assert_eq!(t["BackupProtectionEnabled"], false);
    assert_eq!(t["LastResult"], "Success");
    assert!(
        t["Description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Created by {USER} at ")),
        "{t}"
    );
    assert!(t.get("CloudGatewayPools").is_none());
    assert!(t.get("FailoverToOthersGatewaysIfFail").is_none());

    // JSON types are strict.
    let (status, err) = em
        .json(
            Method::POST,
            "/cloud/tenants",
            Some(json!({"Name": "x", "Password": SECRET, "Enabled": "true", "BackupServerUid": VBR01})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        err["Message"]
            .as_str()
            .unwrap()
            .contains("[Enabled] must be a JSON boolean"),
        "{err}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn bad_values_are_400_naming_the_problem_and_never_reach_the_task_engine() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    let repo = resources(&[backup_resource("Cloud", REPO01, 2048, "")]);
    let creates: Vec<(String, &str)> = vec![
        (tenant("a+b", "", ""), "contains [+]"),
        (tenant("a[b", "", ""), "contains [[]"),
        (tenant("a,b", "", ""), "contains [,]"),
        (tenant("a/b", "", ""), "contains [/]"),
        (tenant("a:b", "", ""), "contains [:]"),
        (tenant("a*b", "", ""), "contains [*]"),
        (tenant("a?b", "", ""), "contains [?]"),
        (tenant("a&quot;b", "", ""), "contains [\"]"),
        (tenant("a&lt;b", "", ""), "contains [<]"),
        (tenant("a|b", "", ""), "contains [|]"),
        (tenant("a=b", "", ""), "contains [=]"),
        (tenant("a;b", "", ""), "contains [;]"),
        (tenant("a@b", "", ""), "contains [@]"),
        (tenant("a\\b", "", ""), "contains [\\]"),
        (tenant("abc.", "", ""), "must not end with a period"),
        (tenant(&"x".repeat(129), "", ""), "longer than 128"),
        (
            create(&format!("<Name>nopw</Name><BackupServerUid>{VBR01}</BackupServerUid>")),
            "needs a <Password>",
        ),
        (
            create(&format!("<Name>nopw</Name><Password></Password><BackupServerUid>{VBR01}</BackupServerUid>")),
            "needs a <Password>",
        ),
        (
            tenant("q", &resources(&[backup_resource("C", REPO01, 1023, "")]), ""),
            "<QuotaMb> is not a whole number of at least 1024",
        ),
        (
            tenant("q", &resources(&["<BackupResource><Name>C</Name><RepositoryUid>x</RepositoryUid><QuotaMb>2048</QuotaMb></BackupResource>".into()]), ""),
            "not a valid Repository UID",
        ),
        (
            tenant("q", &resources(&["<BackupResource><Name>C</Name><RepositoryUid>urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101</RepositoryUid><Quota>2048</Quota></BackupResource>".into()]), ""),
            "size is <QuotaMb>",
        ),
        (tenant("u", "<ThrottlingSpeedUnit>mbps</ThrottlingSpeedUnit>", ""), "one of Mbps, KBps, MBps"),
        (tenant("u", "<ThrottlingSpeedLimit>0</ThrottlingSpeedLimit>", ""), "<ThrottlingSpeedLimit> is not a whole number from 1"),
        (tenant("u", "<PublicIpCount>-1</PublicIpCount>", ""), "<PublicIpCount> is not a whole number from 0"),
        (tenant("u", "", "<MaxConcurrentTasks>0</MaxConcurrentTasks>"), "<MaxConcurrentTasks> is not a whole number from 1"),
        (tenant("u", "", "<BackupProtectionPeriod>0</BackupProtectionPeriod>"), "<BackupProtectionPeriod> is not a whole number from 1"),
        (tenant("u", "", "<TenantType>Cloud</TenantType>"), "one of Standalone, vCD, ActiveDirectory"),
        (
            tenant("u", "<LeaseExpirationDate>31.12.2099</LeaseExpirationDate>", ""),
            "is not an xs:dateTime",
        ),
        (
            tenant("u", &format!(r#"<LeaseOptions Enabled="true" ExpirationDate="2099-12-31T00:00:00Z"/>{repo}"#), ""),
            "<LeaseOptions> is not expected in <CreateCloudTenantSpec>: a new tenant's lease is <LeaseExpirationDate>",
        ),
        (tenant("u", "", "<CloudGatewayPools/>"), "must contain at least 1 <CloudGatewayPoolUid>"),
        (
            tenant("u", "", "<CloudGatewayPools><CloudGatewayPoolUid>urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-00000000d801</CloudGatewayPoolUid><CloudGatewayPoolUid>urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-00000000d801</CloudGatewayPoolUid></CloudGatewayPools>"),
            "is listed twice in <CloudGatewayPools>",
        ),
        (
            tenant("u", "", "<FailoverToOtherGatewaysIfFail>true</FailoverToOtherGatewaysIfFail>"),
            "EM spells it <FailoverToOthersGatewaysIfFail>",
        ),
        (
            create(&format!("<Name>u</Name><Password>{SECRET}</Password><BackupServerUID>{VBR01}</BackupServerUID>")),
            "the element is <BackupServerUid>",
        ),
        (tenant("u", "<PublicIPCount>1</PublicIPCount>", ""), "the element is <PublicIpCount>"),
        (
            create(&format!("<Name>u</Name><Password>{SECRET}</Password><BackupServerUid>urn:veeam:BackupServer:00000000-0000-4000-8000-000000000009</BackupServerUid>")),
            "Backup server was not found",
        ),
        (
            create(&format!("<Password>{SECRET}</Password><Name>u</Name><BackupServerUid>{VBR01}</BackupServerUid>")),
            "<Name> is out of order",
        ),
    ];
    let acme = format!("/cloud/tenants/{ACME_ID}");
    let quota_put = |attrs: &str, inner: &str| {
        put(&format!(
            "<Resources><CloudTenantResource{attrs}><RepositoryQuota>{inner}</RepositoryQuota></CloudTenantResource></Resources>{}",
            standalone("acme")
        ))
    };
    let quota_ok = format!(
        "<DisplayName>C</DisplayName><RepositoryUid>{REPO01}</RepositoryUid><Quota>204800</Quota>"
    );
    let others: Vec<(Method, String, String, &str)> = vec![
        (
            Method::POST,
            format!("{acme}/resources"),
            resource_spec("C", REPO01, 1000, ""),
            "at least 1024",
        ),
        (
            Method::POST,
            format!("{acme}/resources"),
            resource_spec("C", "urn:veeam:Repository:nope", 2048, ""),
            "not a valid Repository UID",
        ),
        (
            Method::POST,
            format!("{acme}/resources"),
            resource_spec(
                "C",
                REPO01,
                2048,
                "<WanAcceleratorUid>urn:veeam:WanAccelerator:x</WanAcceleratorUid>",
            ),
            "not a valid WanAccelerator UID",
        ),
        (
            Method::POST,
            format!("{acme}/resources"),
            format!(
                r#"<CreateCloudTenantResourceSpec xmlns="{NS}"><Name>C</Name><QuotaMb>2048</QuotaMb></CreateCloudTenantResourceSpec>"#
            ),
            "<RepositoryUid> is missing",
        ),
        (
            Method::PUT,
            acme.clone(),
            quota_put("", &quota_ok),
            "Attribute [Id] is missing",
        ),
        (
            Method::PUT,
            acme.clone(),
            quota_put(
                &format!(r#" Id="{ACME_QUOTA}""#),
                &quota_ok.replace("204800", "512"),
            ),
            "<Quota> is not a whole number of at least 1024",
        ),
        (
            Method::PUT,
            acme.clone(),
            quota_put(
                &format!(r#" Id="{ACME_QUOTA}""#),
                &quota_ok.replace("<Quota>204800</Quota>", "<QuotaMb>204800</QuotaMb>"),
            ),
            "size is <Quota> (MB)",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!(
                "<LeaseExpirationDate>2099-12-31T00:00:00Z</LeaseExpirationDate>{}",
                standalone("acme")
            )),
            "<LeaseOptions Enabled=\"true\" ExpirationDate=",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!("<LeaseOptions/>{}", standalone("acme"))),
            "Attribute [Enabled] is missing in <LeaseOptions>",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!(
                r#"<LeaseOptions Enabled="true"/>{}"#,
                standalone("acme")
            )),
            "needs an ExpirationDate",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!(
                r#"<LeaseOptions Enabled="true" ExpirationDate="soon"/>{}"#,
                standalone("acme")
            )),
            "is not an xs:dateTime",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!(
                "<Password>{SECRET}</Password><Enabled>maybe</Enabled>{}",
                standalone("acme")
            )),
            "is not a boolean",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!(
                "{}<FailoverToOtherGatewaysIfFail>true</FailoverToOtherGatewaysIfFail>",
                standalone("acme")
            )),
            "EM spells it <FailoverToOthersGatewaysIfFail>",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!(
                "{}<CloudGatewayPools><CloudGatewayPoolUid>urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-00000000d801</CloudGatewayPoolUid><CloudGatewayPoolUid>urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-00000000d801</CloudGatewayPoolUid></CloudGatewayPools>",
                standalone("acme")
            )),
            "is listed twice",
        ),
        (
            Method::DELETE,
            format!("{acme}?includeBackups=maybe"),
            String::new(),
            "[includeBackups] is not a boolean",
        ),
    ];
    let mut count = 0;
    let mut check = |status: StatusCode, text: &str, expected: &str, what: &str| {
        assert_eq!(status, 400, "{what}: {text}");
        let error = parse_xml(text).unwrap();
        assert_eq!(error.name, "Error");
        assert_eq!(error.attr("StatusCode"), Some("400"));
        let message = error.attr("Message").unwrap();
        assert!(
            message.contains(expected),
            "{what}\nexpected {expected:?} in {message}"
        );
        assert!(
            !text.contains(SECRET),
            "an error repeats the password: {text}"
        );
        count += 1;
    };
    for (body, expected) in &creates {
        let (status, text) = em
            .xml(Method::POST, "/cloud/tenants", Some(body.clone()))
            .await;
        check(status, &text, expected, body);
    }
    for (method, path, body, expected) in &others {
        let body = (!body.is_empty()).then(|| body.clone());
        let (status, text) = em.xml(method.clone(), path, body.clone()).await;
        check(
            status,
            &text,
            expected,
            &format!("{method} {path} {body:?}"),
        );
    }
    let state = sim_state(&sim).await;
    assert_eq!(
        state["operations_pending"], 0,
        "nothing reached the task engine"
    );
    assert_eq!(state["counters"]["protocol_violations"], count);
    assert!(em.get("/tasks").await.children.is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn a_put_without_tenant_type_gets_ems_500() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    for body in [
        put("<Description>no type</Description>"),
        put("<Description>empty type</Description><TenantType/>"),
    ] {
        let (status, text) = em
            .xml(
                Method::PUT,
                &format!("/cloud/tenants/{ACME_ID}"),
                Some(body),
            )
            .await;
        assert_eq!(status, 500, "{text}");
        assert!(
            text.contains("Object reference not set to an instance of an object."),
            "{text}"
        );
    }
    let (status, value) = em
        .json(
            Method::PUT,
            &format!("/cloud/tenants/{ACME_ID}"),
            Some(json!({"Description": "x"})),
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(value["StatusCode"], 500);
    sim.stop().await;
}

#[tokio::test]
async fn rules_on_other_objects_end_in_a_failed_task_with_a_message() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    // A pool on vbr02, to be refused for a vbr01 tenant.
    let gw = em
        .run(
            Method::POST,
            "/cloud/gateways",
            format!(
                r#"<CreateCloudGatewaySpec xmlns="{NS}"><ServerHostName>gw-a.example.local</ServerHostName><NetworkType>Direct</NetworkType><BackupServerUid>{VBR02}</BackupServerUid></CreateCloudGatewaySpec>"#
            ),
        )
        .await;
    assert!(gw.succeeded(), "{}", gw.message());
    let gw_uid = format!(
        "urn:veeam:CloudGateway:{}",
        gw.related_path(&sim).rsplit('/').next().unwrap()
    );
    let pool = em
        .run(
            Method::POST,
            "/cloud/gatewayPools",
            format!(
                r#"<CreateCloudGatewayPoolSpec xmlns="{NS}"><Name>vbr02 pool</Name><CloudGateways><CloudGatewayUid>{gw_uid}</CloudGatewayUid></CloudGateways><BackupServerUid>{VBR02}</BackupServerUid></CreateCloudGatewayPoolSpec>"#
            ),
        )
        .await;
    let vbr02_pool = format!(
        "urn:veeam:CloudGatewayPool:{}",
        pool.related_path(&sim).rsplit('/').next().unwrap()
    );
    let unknown = "3f2a1c10-0000-4000-8000-0000000000ff";
    let quota = |name: &str, repo: &str| backup_resource(name, repo, 2048, "");
    let acme = format!("/cloud/tenants/{ACME_ID}");
    let quota_put = |id: &str, repo: &str, quota_mb: i64| {
        put(&format!(
            r#"<Resources><CloudTenantResource Id="{id}"><RepositoryQuota><DisplayName>Cloud Repository</DisplayName><RepositoryUid>{repo}</RepositoryUid><Quota>{quota_mb}</Quota></RepositoryQuota></CloudTenantResource></Resources>{}"#,
            standalone("acme")
        ))
    };
    let cases: Vec<(Method, String, String, &str, &str)> = vec![
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant("ACME", "", ""),
            "CreateCloudTenant",
            "Cloud tenant with the name ACME already exists",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant(
                "r1",
                &resources(&[quota("C", &format!("urn:veeam:Repository:{unknown}"))]),
                "",
            ),
            "CreateCloudTenant",
            "was not found",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant("r2", &resources(&[quota("C", REPO_ON_VBR02)]), ""),
            "CreateCloudTenant",
            "Repository Cloud Repository 02 belongs to another backup server",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant(
                "w1",
                &resources(&[backup_resource(
                    "C",
                    REPO01,
                    2048,
                    &format!(
                        "<WanAcceleratorUid>urn:veeam:WanAccelerator:{unknown}</WanAcceleratorUid>"
                    ),
                )]),
                "",
            ),
            "CreateCloudTenant",
            "WAN accelerator [urn:veeam:WanAccelerator:3f2a1c10-0000-4000-8000-0000000000ff] was not found",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant(
                "w2",
                &resources(&[backup_resource(
                    "C",
                    REPO01,
                    2048,
                    &format!("<WanAcceleratorUid>{WAN02}</WanAcceleratorUid>"),
                )]),
                "",
            ),
            "CreateCloudTenant",
            "WAN accelerator wan02.example.local belongs to another backup server",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant(
                "two",
                &resources(&[quota("A", REPO01), quota("B", REPO01)]),
                "",
            ),
            "CreateCloudTenant",
            "already has a storage quota on repository",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant(
                "names",
                &resources(&[quota("Same", REPO01), quota("SAME", NEARLY_FULL)]),
                "",
            ),
            "CreateCloudTenant",
            "already has a cloud repository named SAME",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant(
                "p1",
                "",
                &format!(
                    "<CloudGatewayPools><CloudGatewayPoolUid>urn:veeam:CloudGatewayPool:{unknown}</CloudGatewayPoolUid></CloudGatewayPools>"
                ),
            ),
            "CreateCloudTenant",
            "Cloud gateway pool [urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-0000000000ff] was not found",
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            tenant(
                "p2",
                "",
                &format!(
                    "<CloudGatewayPools><CloudGatewayPoolUid>{vbr02_pool}</CloudGatewayPoolUid></CloudGatewayPools>"
                ),
            ),
            "CreateCloudTenant",
            "Cloud gateway pool vbr02 pool belongs to another backup server",
        ),
        (
            Method::POST,
            format!("{acme}/resources"),
            resource_spec("Other name", REPO01, 2048, ""),
            "CreateCloudTenantResource",
            "already has a storage quota on repository",
        ),
        (
            Method::POST,
            format!("{acme}/resources"),
            resource_spec("cloud repository", NEARLY_FULL, 2048, ""),
            "CreateCloudTenantResource",
            "already has a cloud repository named",
        ),
        (
            Method::POST,
            format!("{acme}/resources"),
            resource_spec("Elsewhere", REPO_ON_VBR02, 2048, ""),
            "CreateCloudTenantResource",
            "belongs to another backup server",
        ),
        (
            Method::PUT,
            format!("/cloud/tenants/{GLOBEX_ID}"),
            quota_put(ACME_QUOTA, REPO01, 204800),
            "EditCloudTenant",
            "does not belong to cloud tenant globex",
        ),
        (
            Method::PUT,
            acme.clone(),
            quota_put(ACME_QUOTA, REPO01, 10240),
            "EditCloudTenant",
            "cannot be less than the space its backups use (20480 MB)",
        ),
        (
            Method::PUT,
            acme.clone(),
            quota_put(ACME_QUOTA, SOBR, 204800),
            "EditCloudTenant",
            "scale-out backup repository",
        ),
        (
            Method::PUT,
            acme.clone(),
            quota_put(ACME_QUOTA, REPO_ON_VBR02, 204800),
            "EditCloudTenant",
            "belongs to another backup server",
        ),
        (
            Method::PUT,
            acme.clone(),
            put("<TenantType><vCloudTenant><Anything/></vCloudTenant></TenantType>"),
            "EditCloudTenant",
            "is a standalone tenant; its type cannot be changed to vCloudTenant",
        ),
        (
            Method::PUT,
            acme.clone(),
            put(&format!(
                "{}<CloudGatewayPools><CloudGatewayPoolUid>{vbr02_pool}</CloudGatewayPoolUid></CloudGatewayPools>",
                standalone("acme")
            )),
            "EditCloudTenant",
            "belongs to another backup server",
        ),
    ];
    let mut tasks = Vec::new();
    for (method, path, body, operation, expected) in cases {
        let task = em.accepted(method, &path, body).await;
        tasks.push((task, operation, expected, path));
    }
    for (task, operation, expected, path) in tasks {
        let done = em.finished(&task).await;
        assert_eq!(done.operation(), operation);
        assert!(!done.succeeded(), "{path}: expected a failure");
        assert!(
            done.message().contains(expected),
            "{path}\nexpected {expected:?} in {}",
            done.message()
        );
        assert!(done.related().is_none(), "no Related link on a failure");
    }
    // Nothing of that changed acme.
    let acme_now = em.get_json(&format!("{acme}?format=Entity")).await;
    assert_eq!(
        acme_now["Resources"]["CloudTenantResources"][0]["RepositoryQuota"]["Quota"],
        102400
    );
    assert_eq!(em.get("/cloud/tenants").await.children.len(), 2);

    // The same name on another backup server is fine; so is a quota bigger than the free space.
    let body = create(&format!(
        "<Name>acme</Name><Password>{SECRET}</Password>{}<BackupServerUid>{VBR02}</BackupServerUid>",
        resources(&[quota("Big", REPO_ON_VBR02).replace("2048", &(100 * 1024 * 1024).to_string())])
    ));
    let ok = em.run(Method::POST, "/cloud/tenants", body).await;
    assert!(ok.succeeded(), "{}", ok.message());

    sim.stop().await;
}

#[tokio::test]
async fn a_tenant_or_quota_gone_before_the_task_ran_fails_it() {
    // Slow tasks: every write below is accepted while the objects are still there.
    let sim = sim_with(|c| c.task_time = Duration::from_millis(1500));
    let em = Em::logon(&sim).await;
    let fresh = new_tenant(
        &em,
        tenant(
            "short-lived",
            &resources(&[backup_resource("C", REPO01, 2048, "")]),
            "",
        ),
    )
    .await;
    let path = format!("/cloud/tenants/{fresh}");
    let entity = em.get_json(&format!("{path}?format=Entity")).await;
    let rid = entity["Resources"]["CloudTenantResources"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let del_quota = em
        .accepted(
            Method::DELETE,
            &format!("{path}/resources/{rid}"),
            String::new(),
        )
        .await;
    let del_quota_again = em
        .accepted(
            Method::DELETE,
            &format!("{path}/resources/{rid}"),
            String::new(),
        )
        .await;
    let delete = em.accepted(Method::DELETE, &path, String::new()).await;
    let edit = em
        .accepted(
            Method::PUT,
            &path,
            put(&format!(
                "<Description>late</Description>{}",
                standalone("short-lived")
            )),
        )
        .await;
    let add = em
        .accepted(
            Method::POST,
            &format!("{path}/resources"),
            resource_spec("Late", NEARLY_FULL, 2048, ""),
        )
        .await;
    assert!(em.finished(&del_quota).await.succeeded());
    let again = em.finished(&del_quota_again).await;
    assert!(
        again
            .message()
            .contains(&format!("Storage quota [{rid}] was not found")),
        "{}",
        again.message()
    );
    let deleted = em.finished(&delete).await;
    assert!(deleted.succeeded());
    assert_eq!(deleted.operation(), "DeleteCloudTenant");
    assert!(deleted.related().is_none());
    for late in [edit, add] {
        let done = em.finished(&late).await;
        assert!(!done.succeeded());
        assert!(
            done.message()
                .contains(&format!("Cloud tenant [{fresh}] was not found")),
            "{}",
            done.message()
        );
    }
    let (status, _) = em.xml(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    sim.stop().await;
}

#[tokio::test]
async fn quotas_are_added_read_and_removed_and_used_space_shows_in_free_space() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    let t = new_tenant(&em, tenant("quota-owner", "", "")).await;
    let base = format!("/cloud/tenants/{t}");
    let before = free_space(&em, NEARLY_FULL).await;
    assert_eq!(before, 50 * GB, "the seed's nearly full repository");

    let task = em
        .run(
            Method::POST,
            &format!("{base}/resources"),
            resource_spec(
                "Cloud",
                NEARLY_FULL,
                102400,
                "<WanAcceleratorUid/><Folder>ignored</Folder>",
            ),
        )
        .await;
    assert!(task.succeeded(), "{}", task.message());
    assert_eq!(task.operation(), "CreateCloudTenantResource");
    let (kind, href, name) = task.related().unwrap();
    assert_eq!(kind, "CloudTenantResource");
    assert_eq!(name, "quota-owner");
    let rid = href.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        href,
        format!("{}{base}/resources/{rid}", sim.api_url),
        "no ?format"
    );

    // Read: the list and the quota with its links, XML and JSON.
    let list = em.get(&format!("{base}/resources")).await;
    assert_eq!(list.name, "CloudTenantResources");
    let item = &list.children[0];
    assert_eq!(names(item), ["Links", "RepositoryQuota"]);
    let links: Vec<(&str, &str)> = item
        .child("Links")
        .unwrap()
        .children
        .iter()
        .map(|l| (l.attr("Rel").unwrap(), l.attr("Type").unwrap()))
        .collect();
    assert_eq!(
        links,
        [
            ("Delete", "CloudTenantResource"),
            ("Up", "CloudTenant"),
            ("Up", "BackupServer")
        ]
    );
    for link in &item.child("Links").unwrap().children {
        let path = link
            .attr("Href")
            .unwrap()
            .strip_prefix(&sim.api_url)
            .unwrap()
            .to_string();
        assert_eq!(em.xml(Method::GET, &path, None).await.0, 200, "{path}");
    }
    let one = em.get_json(&format!("{base}/resources/{rid}")).await;
    assert_eq!(one["Id"], rid);
    assert_eq!(one["RepositoryQuota"]["Quota"], 102400);
    assert_eq!(one["RepositoryQuota"]["UsedQuota"], 0);
    assert!(one["RepositoryQuota"].get("WanAcceleratorUid").is_none());
    let json_list = em.get_json(&format!("{base}/resources")).await;
    assert_eq!(json_list["CloudTenantResources"][0]["Id"], rid);
    assert_eq!(
        free_space(&em, NEARLY_FULL).await,
        before,
        "a quota reserves nothing (and may exceed the free space)"
    );

    // Simulated backups: 10 GB used.
    set_used(&sim, &t, &rid, 10240).await;
    let one = em.get_json(&format!("{base}/resources/{rid}")).await;
    assert_eq!(one["RepositoryQuota"]["UsedQuota"], 10240);
    let entity = em.get_json(&format!("{base}?format=Entity")).await;
    assert_eq!(
        entity["Resources"]["CloudTenantResources"][0]["RepositoryQuota"]["UsedQuota"],
        10240
    );
    assert_eq!(free_space(&em, NEARLY_FULL).await, before - 10 * GB);
    let query = em
        .get_json("/query?type=Repository&format=Entities&filter=Name==\"Nearly Full Repository\"")
        .await;
    assert_eq!(
        query["Entities"]["Repositories"]["Repositories"][0]["FreeSpace"],
        before - 10 * GB
    );
    // The control call refuses what cannot be.
    for (path, body, status) in [
        (
            format!("/_sim/tenants/{t}/resources/{rid}/used"),
            json!({"used_mb": -1}),
            400,
        ),
        (
            format!("/_sim/tenants/{t}/resources/{rid}/used"),
            json!({"used_mb": "5"}),
            400,
        ),
        (
            format!("/_sim/tenants/{t}/resources/{ACME_QUOTA}/used"),
            json!({"used_mb": 5}),
            404,
        ),
        (
            format!("/_sim/tenants/{GLOBEX_ID}/resources/{rid}/used"),
            json!({"used_mb": 5}),
            404,
        ),
        (
            format!("/_sim/tenants/nope/resources/{rid}/used"),
            json!({"used_mb": 5}),
            404,
        ),
    ] {
        assert_eq!(
            control(&sim, Method::PUT, &path, body).await.0,
            status,
            "{path}"
        );
    }
    assert_eq!(free_space(&em, NEARLY_FULL).await, before - 10 * GB);

    // Remove: the quota goes, its backups stay on the repository.
    let gone = em
        .run(
            Method::DELETE,
            &format!("{base}/resources/{rid}"),
            String::new(),
        )
        .await;
    assert!(gone.succeeded());
    assert_eq!(gone.operation(), "DeleteCloudTenantResource");
    assert!(gone.related().is_none());
    assert_eq!(
        em.xml(Method::GET, &format!("{base}/resources/{rid}"), None)
            .await
            .0,
        404
    );
    assert_eq!(free_space(&em, NEARLY_FULL).await, before - 10 * GB);
    let state = sim_state(&sim).await;
    let repo = state["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uid"] == NEARLY_FULL)
        .unwrap();
    assert_eq!(repo["left_behind_mb"], 10240);
    // Another tenant's quota is not this tenant's: 404.
    let (status, _) = em
        .xml(
            Method::DELETE,
            &format!("{base}/resources/{ACME_QUOTA}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    sim.stop().await;
}

#[tokio::test]
async fn include_backups_decides_whether_a_deleted_tenants_backups_stay() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    let before = free_space(&em, NEARLY_FULL).await;
    let mut tenants = Vec::new();
    for name in ["keeps", "wipes"] {
        let t = new_tenant(
            &em,
            tenant(
                name,
                &resources(&[backup_resource("C", NEARLY_FULL, 4096, "")]),
                "",
            ),
        )
        .await;
        let entity = em
            .get_json(&format!("/cloud/tenants/{t}?format=Entity"))
            .await;
        let rid = entity["Resources"]["CloudTenantResources"][0]["Id"]
            .as_str()
            .unwrap()
            .to_string();
        set_used(&sim, &t, &rid, 1024).await;
        tenants.push(t);
    }
    assert_eq!(free_space(&em, NEARLY_FULL).await, before - 2 * GB);
    let keep = em
        .run(
            Method::DELETE,
            &format!("/cloud/tenants/{}?includeBackups=False", tenants[0]),
            String::new(),
        )
        .await;
    assert!(
        keep.succeeded(),
        "a tenant with backups may go without its backups"
    );
    assert_eq!(
        free_space(&em, NEARLY_FULL).await,
        before - 2 * GB,
        "the backups stay"
    );
    let wipe = em
        .run(
            Method::DELETE,
            &format!("/cloud/tenants/{}?INCLUDEBACKUPS=TRUE", tenants[1]),
            String::new(),
        )
        .await;
    assert!(wipe.succeeded());
    assert_eq!(
        free_space(&em, NEARLY_FULL).await,
        before - GB,
        "its backups went with it"
    );
    assert_eq!(em.get("/cloud/tenants").await.children.len(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn put_edits_in_place_round_trips_the_entity_and_replaces_pools() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    let gw = em
        .run(
            Method::POST,
            "/cloud/gateways",
            format!(
                r#"<CreateCloudGatewaySpec xmlns="{NS}"><ServerHostName>gw9.example</ServerHostName><NetworkType>Direct</NetworkType><BackupServerUid>{VBR01}</BackupServerUid></CreateCloudGatewaySpec>"#
            ),
        )
        .await;
    let gw_uid = format!(
        "urn:veeam:CloudGateway:{}",
        gw.related_path(&sim).rsplit('/').next().unwrap()
    );
    let pool = em
        .run(
            Method::POST,
            "/cloud/gatewayPools",
            format!(
                r#"<CreateCloudGatewayPoolSpec xmlns="{NS}"><Name>P</Name><CloudGateways><CloudGatewayUid>{gw_uid}</CloudGatewayUid></CloudGateways><BackupServerUid>{VBR01}</BackupServerUid></CreateCloudGatewayPoolSpec>"#
            ),
        )
        .await;
    let pool_id = pool
        .related_path(&sim)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let pool_uid = format!("urn:veeam:CloudGatewayPool:{pool_id}");
    let t = new_tenant(
        &em,
        tenant(
            "editable",
            &resources(&[
                backup_resource("One", REPO01, 2048, ""),
                backup_resource("Two", NEARLY_FULL, 2048, ""),
            ]),
            &format!("<CloudGatewayPools><CloudGatewayPoolUid>{pool_uid}</CloudGatewayPoolUid></CloudGatewayPools>"),
        ),
    )
    .await;
    let path = format!("/cloud/tenants/{t}");
    let check = |password: &'static str| {
        let sim = &sim;
        let t = t.clone();
        async move {
            let (status, body) = control(
                sim,
                Method::POST,
                &format!("/_sim/tenants/{t}/password-check"),
                json!({"password": password}),
            )
            .await;
            assert_eq!(status, 200);
            body["matches"].as_bool().unwrap()
        }
    };
    assert!(check(SECRET).await);

    // A whole GET body sent back, with one change: accepted, password untouched.
    let (_, text) = em
        .xml(Method::GET, &format!("{path}?format=Entity"), None)
        .await;
    let edited = text.replace("<Description>", "<Description>edited, was: ");
    let done = em.run(Method::PUT, &path, edited).await;
    assert!(done.succeeded(), "{}", done.message());
    assert_eq!(done.operation(), "EditCloudTenant");
    let (kind, href, name) = done.related().unwrap();
    assert_eq!((kind.as_str(), name.as_str()), ("CloudTenant", "editable"));
    assert!(href.ends_with(&format!("{path}?format=Entity")), "{href}");
    let entity = em.get(&format!("{path}?format=Entity")).await;
    assert!(
        entity
            .child_text("Description")
            .unwrap()
            .starts_with("edited, was: ")
    );
    assert!(
        check(SECRET).await,
        "<Password/> sent back leaves it as it was"
    );
    let state = sim_state(&sim).await;
    assert!(
        state["counters"]["advisories"]["CloudTenant/LastResult: output-only element ignored"]
            .as_u64()
            .unwrap()
            >= 1,
        "{state}"
    );

    // The JSON entity round-trips too.
    let mut json_entity = em.get_json(&format!("{path}?format=Entity")).await;
    json_entity["Enabled"] = json!(false);
    let (status, task) = em.json(Method::PUT, &path, Some(json_entity)).await;
    assert_eq!(status, 202, "{task}");

    // Resize one quota by Id; the other is kept. New password; lease; pools unchanged (absent).
    let entity = em.get(&format!("{path}?format=Entity")).await;
    let quotas = &entity.child("Resources").unwrap().children;
    let one = quotas[0].attr("Id").unwrap();
    let done = em
        .run(
            Method::PUT,
            &path,
            put(&format!(
                r#"<Password>N3w-SECRET-pw</Password><LeaseOptions Enabled="true" ExpirationDate="2030-01-01T02:00:00+02:00"/><Resources><CloudTenantResource Id="{one}"><RepositoryQuota><DisplayName>One renamed</DisplayName><RepositoryUid>{REPO01}</RepositoryUid><WanAcceleratorUid>{WAN01}</WanAcceleratorUid><Quota>409600</Quota></RepositoryQuota></CloudTenantResource></Resources><ThrottlingEnabled>true</ThrottlingEnabled><ThrottlingSpeedUnit>KBps</ThrottlingSpeedUnit>{}<FailoverToOthersGatewaysIfFail>false</FailoverToOthersGatewaysIfFail>"#,
                standalone("ignored-read-only")
            )),
        )
        .await;
    assert!(done.succeeded(), "{}", done.message());
    assert!(check("N3w-SECRET-pw").await);
    assert!(!check(SECRET).await);
    let t_json = em.get_json(&format!("{path}?format=Entity")).await;
    assert_eq!(t_json["Enabled"], false, "the JSON PUT applied");
    assert_eq!(
        t_json["LeaseOptions"],
        json!({"Enabled": true, "ExpirationDate": "2030-01-01T00:00:00Z"})
    );
    let q = t_json["Resources"]["CloudTenantResources"]
        .as_array()
        .unwrap();
    assert_eq!(q.len(), 2, "the unlisted quota is kept");
    assert_eq!(q[0]["RepositoryQuota"]["DisplayName"], "One renamed");
    assert_eq!(q[0]["RepositoryQuota"]["Quota"], 409600);
    assert_eq!(q[0]["RepositoryQuota"]["WanAcceleratorUid"], WAN01);
    assert_eq!(q[1]["RepositoryQuota"]["DisplayName"], "Two");
    assert_eq!(t_json["ThrottlingSpeedUnit"], "KBps");
    assert_eq!(t_json["FailoverToOthersGatewaysIfFail"], false);
    assert_eq!(
        t_json["TenantType"]["StandaloneTenant"]["TenantCredentials"]["Username"], "editable",
        "a tenant cannot be renamed"
    );
    assert_eq!(
        t_json["CloudGatewayPools"],
        json!({"CloudGatewayPoolUids": [pool_uid]})
    );

    // An empty WanAcceleratorUid removes the accelerator; a lease can be ended.
    let done = em
        .run(
            Method::PUT,
            &path,
            put(&format!(
                r#"<LeaseOptions Enabled="false"/><Resources><CloudTenantResource Id="{one}"><RepositoryQuota><DisplayName>One renamed</DisplayName><RepositoryUid>{REPO01}</RepositoryUid><WanAcceleratorUid/><Quota>409600</Quota></RepositoryQuota></CloudTenantResource></Resources>{}"#,
                standalone("editable")
            )),
        )
        .await;
    assert!(done.succeeded(), "{}", done.message());
    let t_json = em.get_json(&format!("{path}?format=Entity")).await;
    assert_eq!(t_json["LeaseOptions"], json!({"Enabled": false}));
    assert!(
        t_json["Resources"]["CloudTenantResources"][0]["RepositoryQuota"]
            .get("WanAcceleratorUid")
            .is_none()
    );

    // Pools: an empty element = no pools, on both sides of the membership.
    let done = em
        .run(
            Method::PUT,
            &path,
            put(&format!("{}<CloudGatewayPools/>", standalone("editable"))),
        )
        .await;
    assert!(done.succeeded(), "{}", done.message());
    let entity = em.get(&format!("{path}?format=Entity")).await;
    assert!(entity.child("CloudGatewayPools").is_none());
    assert!(
        em.get(&format!("{path}/gatewayPools"))
            .await
            .children
            .is_empty()
    );
    let pool_entity = em
        .get_json(&format!("/cloud/gatewayPools/{pool_id}?format=Entity"))
        .await;
    assert_eq!(pool_entity["CloudTenants"], json!({}));
    let done = em
        .run(
            Method::PUT,
            &path,
            put(&format!("{}<CloudGatewayPools><CloudGatewayPoolUid>{pool_uid}</CloudGatewayPoolUid></CloudGatewayPools>", standalone("editable"))),
        )
        .await;
    assert!(done.succeeded(), "{}", done.message());
    assert_eq!(
        em.get(&format!("/cloud/gatewayPools/{pool_id}/tenants"))
            .await
            .children
            .len(),
        1
    );

    // Deleting the tenant takes it out of the pool.
    let gone = em.run(Method::DELETE, &path, String::new()).await;
    assert!(gone.succeeded());
    let pool_entity = em
        .get_json(&format!("/cloud/gatewayPools/{pool_id}?format=Entity"))
        .await;
    assert_eq!(pool_entity["CloudTenants"], json!({}));
    for answer in em.answers() {
        assert!(
            !answer.contains("N3w-SECRET-pw") && !answer.contains(SECRET),
            "{answer}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn passwords_never_show_in_any_answer_or_in_the_state() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    let json_secret = "JSON-only-SECRET-0042";
    let t = new_tenant(
        &em,
        tenant(
            "pw-xml",
            &resources(&[backup_resource("C", REPO01, 2048, "")]),
            "",
        ),
    )
    .await;
    let (status, task) = em
        .json(
            Method::POST,
            "/cloud/tenants",
            Some(json!({"Name": "pw-json", "Password": json_secret, "BackupServerUid": VBR01})),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    eventually("the JSON tenant", Duration::from_secs(10), || async {
        let list = em.get("/cloud/tenants").await;
        list.children
            .iter()
            .any(|r| r.attr("Name") == Some("pw-json"))
            .then_some(())
    })
    .await;
    let base = format!("/cloud/tenants/{t}");
    for path in [
        "/cloud/tenants".to_string(),
        "/cloud/tenants?format=Entity".into(),
        base.clone(),
        format!("{base}?format=Entity"),
        format!("{base}/resources"),
        "/tasks".into(),
        "/query?type=CloudTenant&format=Entities".into(),
        "/query?type=Task".into(),
    ] {
        em.xml(Method::GET, &path, None).await;
        em.json(Method::GET, &path, None).await;
    }
    // A password change and a refused body that carries one.
    em.run(
        Method::PUT,
        &base,
        put(&format!(
            "<Password>{json_secret}</Password>{}",
            standalone("pw-xml")
        )),
    )
    .await;
    em.xml(
        Method::PUT,
        &base,
        Some(put(&format!(
            "<Password>{SECRET}</Password><Enabled>nope</Enabled>{}",
            standalone("pw-xml")
        ))),
    )
    .await;
    em.json(
        Method::POST,
        "/cloud/tenants",
        Some(json!({"Name": "bad", "Password": [SECRET], "BackupServerUid": VBR01})),
    )
    .await;
    let base_url = sim.api_url.trim_end_matches("/api");
    let state = http()
        .get(format!("{base_url}/_sim/state"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        state.contains("pw-json") && state.contains(r#""has_password":true"#),
        "{state}"
    );
    let mut answers = em.answers();
    answers.push(state);
    assert!(answers.len() > 20);
    for answer in answers {
        assert!(!answer.contains(SECRET), "the password shows: {answer}");
        assert!(
            !answer.contains(json_secret),
            "the password shows: {answer}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn replication_vcd_and_ad_are_not_implemented() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    let acme = format!("/cloud/tenants/{ACME_ID}");
    let cases: Vec<(Method, String, Option<String>)> = vec![
        (
            Method::POST,
            "/cloud/tenants".into(),
            Some(tenant("v", "", "<TenantType>VCD</TenantType>")),
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            Some(tenant(
                "v",
                "",
                "<TenantType>ActiveDirectory</TenantType><Domain>x</Domain>",
            )),
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            Some(tenant("v", "", "<OrganizationRef>x</OrganizationRef>")),
        ),
        (
            Method::POST,
            "/cloud/tenants".into(),
            Some(create(&format!(
                "<Name>v</Name><Password>{SECRET}</Password><ComputeResources><ComputeResource>x</ComputeResource></ComputeResources><BackupServerUid>{VBR01}</BackupServerUid>"
            ))),
        ),
        (
            Method::PUT,
            acme.clone(),
            Some(put(&format!(
                "<ComputeResources><ComputeResource>x</ComputeResource></ComputeResources>{}",
                standalone("acme")
            ))),
        ),
        (Method::GET, format!("{acme}/computeResources"), None),
        (Method::POST, format!("{acme}/subtenants"), None),
        (Method::GET, format!("{acme}/freeLicenseCounters"), None),
    ];
    for (method, path, body) in cases {
        let (status, text) = em.xml(method.clone(), &path, body).await;
        assert_eq!(status, 501, "{method} {path}: {text}");
        assert!(text.contains("not implemented by the simulator"), "{text}");
    }
    // Empty replication lists echoed back are harmless.
    let ok = em
        .run(
            Method::PUT,
            &acme,
            put(&format!("<ComputeResources/>{}", standalone("acme"))),
        )
        .await;
    assert!(ok.succeeded(), "{}", ok.message());
    let state = sim_state(&sim).await;
    assert_eq!(
        state["counters"]["protocol_violations"], 0,
        "501 is an advisory"
    );
    assert!(
        state["counters"]["advisories"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("501")),
        "{state}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn repositories_read_in_bytes_and_query_types_filter_them_and_tenants() {
    let sim = sim_with(|_| {});
    let em = Em::logon(&sim).await;
    let refs = em.get("/repositories").await;
    assert_eq!(refs.name, "EntityReferences");
    assert_eq!(refs.children.len(), 5);
    let first = &refs.children[0];
    assert_eq!(first.attr("Type"), Some("RepositoryReference"));
    assert_eq!(first.attr("UID"), Some(REPO01));
    let rels: Vec<&str> = first
        .child("Links")
        .unwrap()
        .children
        .iter()
        .filter_map(|l| l.attr("Rel"))
        .collect();
    assert_eq!(rels, ["Up", "Alternate"]);

    let entities = em.get("/repositories?format=Entity").await;
    assert_eq!(entities.name, "Repositories");
    let sobr = entities
        .children
        .iter()
        .find(|r| r.attr("UID") == Some(SOBR))
        .unwrap();
    assert_eq!(names(sobr), ["Links", "Capacity", "FreeSpace", "Kind"]);
    assert_eq!(sobr.child_text("Kind"), Some("Extendable"));
    assert_eq!(
        sobr.child_text("Capacity"),
        Some((50 * 1024 * GB).to_string().as_str())
    );
    let json = em.get_json("/repositories?format=Entity").await;
    let repo01 = &json["Repositories"][0];
    assert_eq!(repo01["Capacity"], 10 * 1024 * GB);
    assert_eq!(
        repo01["FreeSpace"],
        8 * 1024 * GB - 20 * GB,
        "less acme's seeded 20 GB"
    );
    assert_eq!(repo01["Kind"], "WindowsLocal");
    let one = em
        .get("/repositories/3f2a1c10-0000-4000-8000-00000000a103")
        .await;
    assert_eq!(one.name, "EntityRef");
    assert_eq!(
        em.xml(
            Method::GET,
            "/repositories/3f2a1c10-0000-4000-8000-0000000000ff",
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        em.xml(Method::POST, "/repositories", Some("<x/>".into()))
            .await
            .0,
        405
    );

    // Query: repositories by free space (bytes), the doc's example.
    let q = em
        .get("/query?type=Repository&format=Entities&filter=FreeSpace<107374182400")
        .await;
    let items = &q
        .child("Entities")
        .unwrap()
        .child("Repositories")
        .unwrap()
        .children;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].attr("Name"), Some("Nearly Full Repository"));
    let q = em
        .get_json(&format!(
            "/query?type=repository&filter=BackupServerUid=={VBR02}&sortDesc=Name"
        ))
        .await;
    let names: Vec<&str> = q["Refs"]["Refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Default Backup Repository", "Cloud Repository 02"]);

    // Query: tenants, with the fields of §16.1.
    let q = em
        .get("/query?type=CloudTenant&format=Entities&filter=Type==Standalone;Enabled==true;BackupServerName==\"vbr01.example.local\"&sortDesc=Name")
        .await;
    let items = &q
        .child("Entities")
        .unwrap()
        .child("CloudTenants")
        .unwrap()
        .children;
    let names: Vec<&str> = items.iter().map(|t| t.attr("Name").unwrap()).collect();
    assert_eq!(names, ["globex", "acme"]);
    assert_eq!(items[0].name, "CloudTenant");
    let q = em
        .get("/query?type=CloudTenant&filter=UID==5cf540af-512a-5ba8-9f12-77fba51207e0")
        .await;
    assert_eq!(q.child("Refs").unwrap().children.len(), 1);
    let q = em.get("/query?type=CloudTenant&filter=Type==vCD").await;
    assert!(q.child("Refs").unwrap().children.is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn the_task_failure_fault_applies_to_tenant_work() {
    let sim = sim_with(|c| c.faults.task_failure_rate = 1.0);
    let em = Em::logon(&sim).await;
    let done = em
        .run(Method::POST, "/cloud/tenants", tenant("doomed", "", ""))
        .await;
    assert!(!done.succeeded());
    assert!(
        done.message().contains("fault injection"),
        "{}",
        done.message()
    );
    let done = em
        .run(
            Method::POST,
            &format!("/cloud/tenants/{ACME_ID}/resources"),
            resource_spec("More", NEARLY_FULL, 2048, ""),
        )
        .await;
    assert!(!done.succeeded());
    assert_eq!(em.get("/cloud/tenants").await.children.len(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn em_sim_loads_an_old_seed_file_and_prints_what_it_seeded() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = std::env::temp_dir().join(format!("emsim-seed-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = dir.join("old.json");
    std::fs::write(
        &old,
        r#"{"backup_servers": [{"id": "11111111-1111-4111-8111-111111111111", "name": "b1.example"}],
            "tenants": [{"id": "22222222-2222-4222-8222-222222222222", "name": "t1",
                         "backup_server": "11111111-1111-4111-8111-111111111111"}]}"#,
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_em-sim"))
        .args(["--listen", "127.0.0.1:0", "--seed"])
        .arg(&old)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("cloud tenant");
            printed.push(line);
            if done {
                break;
            }
        }
    })
    .await
    .expect("em-sim prints its seed");
    let text = printed.join("\n");
    assert_eq!(text.matches("em-sim: repository").count(), 2, "{text}");
    assert!(text.contains("WAN accelerator"), "{text}");
    child.kill().await.ok();

    // A seed that does not hold together is refused in one line.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"backup_servers": [], "tenants": [{"id": "22222222-2222-4222-8222-222222222222", "name": "t1",
             "backup_server": "11111111-1111-4111-8111-111111111111"}]}"#,
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_em-sim"))
        .args(["--listen", "127.0.0.1:0", "--seed"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown backup server"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
