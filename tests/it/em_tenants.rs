//! The EM client's tenant, storage-quota and repository calls against a real em-sim
//! (em-api.md §16): what it writes is accepted, what EM answers is read back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use em_gateway::em::xml::{
    self, BackupResources, CloudGatewayPoolUids, CloudGatewayUids, CloudTenantEdit,
    CloudTenantResourceEdit, CloudTenantType, CreateCloudGatewayPoolSpec, CreateCloudGatewaySpec,
    CreateCloudTenantResourceSpec, CreateCloudTenantSpec, LeaseOptions, Namespace, NetworkMode,
    TaskState, ThrottlingSpeedUnit,
};
use em_gateway::em::{EmClient, EmError, Submitted};
use em_gateway::sim::RunningSim;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

const ACME_ID: &str = "5cf540af-512a-5ba8-9f12-77fba51207e0";
const ACME_QUOTA: &str = "3f2a1c10-0000-4000-8000-00000000e911";
const REPO01: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101";
const SOBR: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a102";
const NEARLY_FULL: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a103";
const REPO_ON_VBR02: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a201";
const WAN01: &str = "urn:veeam:WanAccelerator:3f2a1c10-0000-4000-8000-00000000aa01";
/// Bytes in one of Veeam's MB.
const MB: u64 = 1024 * 1024;
/// Markup characters on purpose: the password must arrive escaped and whole.
const FIRST_PASSWORD: &str = r#"In1tial&<Pa55> "q""#;

fn id(text: &str) -> Uuid {
    Uuid::parse_str(xml::id_of(text)).unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    xml::parse_xs_datetime(text).unwrap()
}

fn quota(name: &str, repository: &str, quota_mb: u64) -> CreateCloudTenantResourceSpec {
    CreateCloudTenantResourceSpec {
        name: name.into(),
        repository_uid: repository.into(),
        quota_mb,
        wan_accelerator_uid: None,
    }
}

/// A tenant on vbr01 with one quota and nothing else set.
fn tenant_spec(name: &str, resource: CreateCloudTenantResourceSpec) -> CreateCloudTenantSpec {
    CreateCloudTenantSpec {
        xmlns: Namespace,
        name: name.into(),
        description: None,
        password: SecretString::from(FIRST_PASSWORD.to_string()),
        enabled: None,
        lease_expiration_date: None,
        resources: BackupResources {
            items: vec![resource],
        },
        throttling_enabled: None,
        throttling_speed_limit: None,
        throttling_speed_unit: None,
        public_ip_count: None,
        backup_server_uid: VBR01.into(),
        max_concurrent_tasks: None,
        backup_protection_enabled: None,
        backup_protection_period: None,
        tenant_type: CloudTenantType::Standalone,
        cloud_gateway_pools: CloudGatewayPoolUids::default(),
        failover_to_others_gateways_if_fail: None,
    }
}

/// Polls the task's own session until EM says `Finished`.
async fn finished(client: &EmClient, submitted: &Submitted) -> xml::Task {
    eventually("the EM task to finish", Duration::from_secs(5), || async {
        let task = client
            .task(&submitted.session, &submitted.task.task_id)
            .await
            .expect("the task is readable");
        (task.state == TaskState::Finished).then_some(task)
    })
    .await
}

/// Runs a write to its end; it must succeed.
async fn succeeded(client: &EmClient, submitted: Submitted, operation: &str) -> xml::Task {
    assert_eq!(submitted.task.operation, operation);
    assert_eq!(submitted.task.state, TaskState::Running);
    let task = finished(client, &submitted).await;
    let result = task.result.as_ref().expect("a finished task has a result");
    assert!(result.success, "{operation}: {result:?}");
    task
}

/// The object a finished task names in its `Related` link, which must have this `Type`.
fn related(task: &xml::Task, type_: &str) -> (Uuid, xml::Link) {
    let link = task
        .links
        .find("Related", Some(type_))
        .unwrap_or_else(|| panic!("a Related {type_} link in {task:?}"))
        .clone();
    (id(&link.href), link)
}

/// Asks em-sim (its control API) whether this is the tenant's password: it never shows one.
async fn password_matches(sim: &RunningSim, tenant: Uuid, password: &str) -> bool {
    let base = sim.api_url.trim_end_matches("/api");
    let resp = http()
        .post(format!("{base}/_sim/tenants/{tenant}/password-check"))
        .json(&json!({ "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    answer["matches"].as_bool().expect("matches: bool")
}

/// Simulated tenant backups: the space a quota's backups take.
async fn set_used(sim: &RunningSim, tenant: Uuid, quota: Uuid, used_mb: u64) {
    let path = format!("/_sim/tenants/{tenant}/resources/{quota}/used");
    sim_control(sim, Method::PUT, &path, Some(json!({ "used_mb": used_mb }))).await;
}

/// A gateway pool on vbr01 (a tenant's pools must be on its backup server).
async fn pool_on_vbr01(client: &EmClient) -> String {
    let gateway = client
        .create_cloud_gateway(&CreateCloudGatewaySpec {
            xmlns: Namespace,
            server_host_name: "gw-tenants.example".into(),
            description: None,
            external_ip: None,
            external_port: None,
            network_type: NetworkMode::Direct,
            internal_port: None,
            backup_server_uid: VBR01.into(),
        })
        .await
        .unwrap();
    let task = succeeded(client, gateway, "CreateCloudGateway").await;
    let (gateway, _) = related(&task, "CloudGateway");
    let pool = client
        .create_cloud_gateway_pool(&CreateCloudGatewayPoolSpec {
            xmlns: Namespace,
            name: "Tenant pool".into(),
            description: None,
            cloud_gateways: CloudGatewayUids {
                uids: vec![format!("urn:veeam:CloudGateway:{gateway}")],
            },
            cloud_tenants: None,
            backup_server_uid: VBR01.into(),
        })
        .await
        .unwrap();
    let task = succeeded(client, pool, "CreateCloudGatewayPool").await;
    format!(
        "urn:veeam:CloudGatewayPool:{}",
        related(&task, "CloudGatewayPool").0
    )
}

async fn free_space(client: &EmClient, repository: &str) -> u64 {
    let repository = client.repository(id(repository)).await.unwrap().unwrap();
    repository.free_space.expect("FreeSpace")
}

#[tokio::test]
async fn creates_a_tenant_with_a_quota_and_reads_it_back() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 2);
    let pool = pool_on_vbr01(&client).await;

    let mut spec = tenant_spec("abc-company", quota("Cloud Repository", REPO01, 307200));
    spec.resources.items[0].wan_accelerator_uid = Some(WAN01.into());
    spec.description = Some("ABC Company".into());
    spec.enabled = Some(true);
    spec.lease_expiration_date = Some(at("2099-12-31T00:00:00Z"));
    spec.throttling_enabled = Some(true);
    spec.throttling_speed_limit = Some(10);
    spec.throttling_speed_unit = Some(ThrottlingSpeedUnit::MBps);
    spec.max_concurrent_tasks = Some(2);
    spec.backup_protection_enabled = Some(true);
    spec.backup_protection_period = Some(7);
    spec.cloud_gateway_pools = CloudGatewayPoolUids {
        uids: vec![pool.clone()],
    };
    spec.failover_to_others_gateways_if_fail = Some(true);
    let submitted = client.create_cloud_tenant(&spec).await.unwrap();
    let task = succeeded(&client, submitted, "CreateCloudTenant").await;
    let (tenant_id, link) = related(&task, "CloudTenant");
    assert_eq!(link.name.as_deref(), Some("abc-company"));
    assert!(link.href.ends_with("?format=Entity"), "{}", link.href);

    let tenant = client
        .cloud_tenant(tenant_id)
        .await
        .unwrap()
        .expect("the new tenant");
    assert_eq!(tenant.name, "abc-company");
    assert_eq!(tenant.uid, format!("urn:veeam:CloudTenant:{tenant_id}"));
    assert_eq!(tenant.username(), Some("abc-company"));
    assert_eq!(tenant.description.as_deref(), Some("ABC Company"));
    assert_eq!(tenant.enabled, Some(true));
    let lease = tenant.lease_options.expect("LeaseOptions");
    assert_eq!(lease.expires(), Some(at("2099-12-31T00:00:00Z")));
    assert_eq!(tenant.last_result.as_deref(), Some("Success"));
    assert_eq!(tenant.last_active, None, "1753-01-01 means never");
    assert_eq!(tenant.throttling_enabled, Some(true));
    assert_eq!(tenant.throttling_speed_limit, Some(10));
    assert_eq!(
        tenant.throttling_speed_unit,
        Some(ThrottlingSpeedUnit::MBps)
    );
    assert_eq!(tenant.public_ip_count, Some(0));
    assert_eq!(tenant.max_concurrent_tasks, Some(2));
    assert_eq!(tenant.backup_protection_enabled, Some(true));
    assert_eq!(tenant.backup_protection_period, Some(7));
    assert_eq!(tenant.backup_count, Some(0));
    assert_eq!(tenant.vm_count, None, "EM no longer writes it");
    assert_eq!(tenant.cloud_gateway_pools.uids, vec![pool.clone()]);
    assert_eq!(tenant.failover_to_others_gateways_if_fail, Some(true));
    let [resource] = tenant.resources.items.as_slice() else {
        panic!("one quota: {:?}", tenant.resources);
    };
    let q = &resource.repository_quota;
    assert_eq!(q.display_name, "Cloud Repository");
    assert_eq!(q.repository_uid, REPO01);
    assert_eq!(q.wan_accelerator_uid.as_deref(), Some(WAN01));
    assert_eq!((q.quota, q.used_quota), (307200, Some(0)));
    assert!(
        resource.links.links.is_empty(),
        "no links inside the entity"
    );

    // The quotas read on their own carry links, and the same ids.
    let quotas = client
        .cloud_tenant_resources(tenant_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(quotas.len(), 1);
    assert_eq!(quotas[0].id, resource.id);
    assert!(quotas[0].links.find("Delete", None).is_some());
    let one = client
        .cloud_tenant_resource(tenant_id, resource.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.repository_quota, quotas[0].repository_quota);
    assert_eq!(
        client
            .cloud_tenant_resource(tenant_id, Uuid::new_v4())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        client.cloud_tenant_resources(Uuid::new_v4()).await.unwrap(),
        None
    );

    // The list has it beside the seeded tenants, whose pools and failover flag are absent.
    let tenants = client.cloud_tenants().await.unwrap();
    assert!(tenants.iter().any(|t| t.uid == tenant.uid));
    let acme = tenants.iter().find(|t| t.uid == ACME).expect("acme");
    assert!(acme.cloud_gateway_pools.uids.is_empty());
    assert_eq!(acme.failover_to_others_gateways_if_fail, None);
    assert_eq!(acme.lease_options.map(|l| l.expires()), Some(None));
    let acme_quota = &acme.resources.items[0];
    assert_eq!(acme_quota.id.to_string(), ACME_QUOTA);
    assert_eq!(
        (
            acme_quota.repository_quota.quota,
            acme_quota.repository_quota.used_quota
        ),
        (102400, Some(20480)),
        "the seeded quota, 20 GB used"
    );
    assert_eq!(acme_quota.repository_quota.wan_accelerator_uid, None);

    assert!(password_matches(&sim, tenant_id, FIRST_PASSWORD).await);
    assert!(!password_matches(&sim, tenant_id, "In1tial&amp;").await);
    sim.stop().await;
}

#[tokio::test]
async fn edits_a_tenant_in_place() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 2);
    let pool = pool_on_vbr01(&client).await;
    let mut spec = tenant_spec("edit-me", quota("Cloud Repository", REPO01, 10240));
    spec.description = Some("before".into());
    spec.lease_expiration_date = Some(at("2099-12-31T00:00:00Z"));
    spec.cloud_gateway_pools = CloudGatewayPoolUids {
        uids: vec![pool.clone()],
    };
    let task = succeeded(
        &client,
        client.create_cloud_tenant(&spec).await.unwrap(),
        "CreateCloudTenant",
    )
    .await;
    let (tenant_id, _) = related(&task, "CloudTenant");
    let before = client.cloud_tenant(tenant_id).await.unwrap().unwrap();

    // Disable, resize the quota, change the password; pools and the rest stay.
    let mut resized = CloudTenantResourceEdit::from(&before.resources.items[0]);
    resized.repository_quota.quota = 40960;
    let new_password = "N3w-<Pa55>&more";
    let mut edit = CloudTenantEdit::new(before.username().unwrap());
    edit.enabled = Some(false);
    edit.resources.items.push(resized);
    edit.password = Some(SecretString::from(new_password.to_string()));
    let submitted = client.edit_cloud_tenant(tenant_id, &edit).await.unwrap();
    succeeded(&client, submitted, "EditCloudTenant").await;
    let after = client.cloud_tenant(tenant_id).await.unwrap().unwrap();
    assert_eq!(after.enabled, Some(false));
    let q = &after.resources.items[0];
    assert_eq!(q.id, before.resources.items[0].id, "resized in place");
    assert_eq!(q.repository_quota.quota, 40960);
    assert_eq!(after.description.as_deref(), Some("before"), "absent: kept");
    assert_eq!(
        after.cloud_gateway_pools.uids,
        vec![pool.clone()],
        "absent: kept"
    );
    assert_eq!(after.lease_options, before.lease_options, "absent: kept");
    assert!(password_matches(&sim, tenant_id, new_password).await);
    assert!(!password_matches(&sim, tenant_id, FIRST_PASSWORD).await);

    // An empty pool list removes the pools; the lease goes; the password stays.
    let mut edit = CloudTenantEdit::new("edit-me");
    edit.cloud_gateway_pools = Some(CloudGatewayPoolUids::default());
    edit.lease_options = Some(LeaseOptions::none());
    edit.description = Some("after".into());
    let submitted = client.edit_cloud_tenant(tenant_id, &edit).await.unwrap();
    succeeded(&client, submitted, "EditCloudTenant").await;
    let after = client.cloud_tenant(tenant_id).await.unwrap().unwrap();
    assert!(after.cloud_gateway_pools.uids.is_empty(), "{after:?}");
    assert_eq!(after.lease_options.and_then(|l| l.expires()), None);
    assert_eq!(after.description.as_deref(), Some("after"));
    assert_eq!(after.resources.items[0].repository_quota.quota, 40960);
    assert!(password_matches(&sim, tenant_id, new_password).await);

    let missing = client
        .edit_cloud_tenant(Uuid::new_v4(), &edit)
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    sim.stop().await;
}

#[tokio::test]
async fn adds_and_deletes_a_storage_quota() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let acme = id(ACME);

    let submitted = client
        .create_cloud_tenant_resource(acme, &quota("Overflow", NEARLY_FULL, 2048))
        .await
        .unwrap();
    let task = succeeded(&client, submitted, "CreateCloudTenantResource").await;
    let (rid, link) = related(&task, "CloudTenantResource");
    assert_eq!(link.name.as_deref(), Some("acme"), "the tenant's name");
    assert!(
        link.href
            .contains(&format!("/cloud/tenants/{ACME_ID}/resources/{rid}")),
        "{}",
        link.href
    );
    let added = client
        .cloud_tenant_resource(acme, rid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(added.id, rid);
    assert_eq!(added.repository_quota.display_name, "Overflow");
    assert_eq!(added.repository_quota.repository_uid, NEARLY_FULL);
    assert_eq!(added.repository_quota.quota, 2048);
    assert_eq!(added.repository_quota.used_quota, Some(0));
    let tenant = client.cloud_tenant(acme).await.unwrap().unwrap();
    assert_eq!(tenant.resources.items.len(), 2);

    let submitted = client
        .delete_cloud_tenant_resource(acme, rid)
        .await
        .unwrap();
    let task = succeeded(&client, submitted, "DeleteCloudTenantResource").await;
    assert!(task.links.find("Related", None).is_none());
    assert_eq!(client.cloud_tenant_resource(acme, rid).await.unwrap(), None);
    let left: Vec<String> = client
        .cloud_tenant_resources(acme)
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|q| q.id.to_string())
        .collect();
    assert_eq!(left, [ACME_QUOTA]);

    let missing = client
        .delete_cloud_tenant_resource(acme, rid)
        .await
        .unwrap_err();
    assert_eq!(missing.em_status(), Some(404), "{missing}");
    sim.stop().await;
}

/// `includeBackups` decides whether the deleted tenant's backups stay on the repository, which
/// em-sim shows in the repository's free space.
#[tokio::test]
async fn deletes_tenants_with_and_without_their_backups() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let mut tenants = Vec::new();
    for name in ["keeps-backups", "drops-backups"] {
        let spec = tenant_spec(name, quota("Cloud Repository", NEARLY_FULL, 4096));
        let task = succeeded(
            &client,
            client.create_cloud_tenant(&spec).await.unwrap(),
            "CreateCloudTenant",
        )
        .await;
        let (tenant, _) = related(&task, "CloudTenant");
        let quotas = client
            .cloud_tenant_resources(tenant)
            .await
            .unwrap()
            .unwrap();
        set_used(&sim, tenant, quotas[0].id, 1024).await;
        tenants.push(tenant);
    }
    let before = free_space(&client, NEARLY_FULL).await;
    assert_eq!(
        before,
        (50 * 1024 - 2 * 1024) * MB,
        "50 GB free less 2 × 1 GB used"
    );

    let submitted = client.delete_cloud_tenant(tenants[0], false).await.unwrap();
    let task = succeeded(&client, submitted, "DeleteCloudTenant").await;
    assert!(task.links.find("Related", None).is_none());
    assert_eq!(client.cloud_tenant(tenants[0]).await.unwrap(), None);
    assert_eq!(
        free_space(&client, NEARLY_FULL).await,
        before,
        "its backups stay"
    );

    let submitted = client.delete_cloud_tenant(tenants[1], true).await.unwrap();
    succeeded(&client, submitted, "DeleteCloudTenant").await;
    assert_eq!(client.cloud_tenant(tenants[1]).await.unwrap(), None);
    assert_eq!(
        free_space(&client, NEARLY_FULL).await,
        before + 1024 * MB,
        "its backups went with it"
    );
    sim.stop().await;
}

#[tokio::test]
async fn reads_repositories_with_capacity_and_free_space_in_bytes() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let repositories = client.repositories().await.unwrap();
    assert_eq!(repositories.len(), 5, "{repositories:?}");
    let repo01 = repositories.iter().find(|r| r.uid == REPO01).unwrap();
    assert_eq!(repo01.name, "Cloud Repository 01");
    assert_eq!(repo01.kind.as_deref(), Some("WindowsLocal"));
    assert_eq!(repo01.capacity, Some(10 * 1024 * 1024 * MB), "10 TB");
    assert_eq!(
        repo01.free_space,
        Some((8 * 1024 * 1024 - 20 * 1024) * MB),
        "8 TB free less acme's 20 GB of backups"
    );
    let server = repo01
        .links
        .find("Up", Some("BackupServerReference"))
        .expect("the backup server");
    assert_eq!(id(&server.href), id(VBR01));
    let sobr = repositories.iter().find(|r| r.uid == SOBR).unwrap();
    assert_eq!(sobr.kind.as_deref(), Some("Extendable"), "scale-out");

    let one = client.repository(id(REPO_ON_VBR02)).await.unwrap().unwrap();
    assert_eq!(one.name, "Cloud Repository 02");
    assert_eq!(one.kind.as_deref(), Some("LinuxLocal"));
    assert_eq!(one.capacity, Some(4 * 1024 * 1024 * MB));
    assert_eq!(client.repository(Uuid::new_v4()).await.unwrap(), None);
    sim.stop().await;
}

#[tokio::test]
async fn business_rule_failures_finish_the_task_with_ems_message() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let acme = id(ACME);

    // acme's seeded quota is on Cloud Repository 01 already.
    let submitted = client
        .create_cloud_tenant_resource(acme, &quota("Second", REPO01, 2048))
        .await
        .unwrap();
    let task = finished(&client, &submitted).await;
    let result = task.result.as_ref().unwrap();
    assert!(!result.success, "{result:?}");
    let message = result.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("already has a storage quota on repository"),
        "{message}"
    );
    assert!(task.links.find("Related", None).is_none());
    assert_eq!(
        client
            .cloud_tenant_resources(acme)
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );

    // A tenant name is its login: taken on this backup server.
    let submitted = client
        .create_cloud_tenant(&tenant_spec("ACME", quota("Cloud", NEARLY_FULL, 1024)))
        .await
        .unwrap();
    let result = finished(&client, &submitted).await.result.unwrap();
    assert!(!result.success);
    assert!(
        result
            .message
            .unwrap_or_default()
            .contains("already exists"),
        "case-insensitive"
    );

    // A quota on another backup server's repository.
    let mut edit = CloudTenantEdit::new("acme");
    let current = client.cloud_tenant(acme).await.unwrap().unwrap();
    let mut moved = CloudTenantResourceEdit::from(&current.resources.items[0]);
    moved.repository_quota.repository_uid = REPO_ON_VBR02.into();
    edit.resources.items.push(moved);
    let submitted = client.edit_cloud_tenant(acme, &edit).await.unwrap();
    let result = finished(&client, &submitted).await.result.unwrap();
    assert!(!result.success);
    assert!(
        result
            .message
            .unwrap_or_default()
            .contains("belongs to another backup server")
    );

    // A value EM refuses outright is a 400 with its message, and no task.
    let err = client
        .create_cloud_tenant_resource(acme, &quota("Tiny", NEARLY_FULL, 1023))
        .await
        .unwrap_err();
    match err {
        EmError::Refused {
            status: 400,
            message,
        } => assert!(message.contains("at least 1024"), "{message}"),
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    sim.stop().await;
}
