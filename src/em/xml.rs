//! Enterprise Manager's XML documents, with EM's element names and EM's element order.
//!
//! Request bodies (`CreateCloudGatewaySpec`, `CreateCloudGatewayPoolSpec`, `CreateCloudTenantSpec`,
//! `CreateCloudTenantResourceSpec`, and the `CloudGateway` / `CloudGatewayPool` / `CloudTenant`
//! entities that EM takes on PUT) are serialized field by field in schema order:
//! EM's .NET deserializer follows the XSD sequence, so the field order of each struct below *is*
//! the wire order. Answers are read leniently (unknown elements are skipped) because EM adds
//! elements between versions.

use chrono::{DateTime, Datelike, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// EM's default namespace; every root element carries it.
pub const NAMESPACE: &str = "http://www.veeam.com/ent/v1.0";

const DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// Serializes a request body: XML declaration, then the root element with EM's namespace.
pub fn to_xml<T: Serialize>(body: &T) -> Result<String, quick_xml::SeError> {
    let mut out = String::from(DECLARATION);
    out.push_str(&quick_xml::se::to_string(body)?);
    Ok(out)
}

/// One of EM's answer documents, by its root element.
pub trait Document {
    const ROOT: &'static str;
}

/// Parses one of EM's answers. The root element must be the expected one: the reader itself
/// would take any document (an HTML error page included) as an empty answer.
pub fn from_xml<'de, T: Deserialize<'de> + Document>(
    text: &'de str,
) -> Result<T, quick_xml::DeError> {
    let root = root_name(text);
    if root.as_deref() != Some(T::ROOT) {
        return Err(quick_xml::DeError::Custom(format!(
            "expected a <{}> document, got {}",
            T::ROOT,
            root.map_or("no XML".to_string(), |r| format!("<{r}>"))
        )));
    }
    quick_xml::de::from_str(text)
}

/// The local name of the first element.
fn root_name(text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return Some(e.local_name().as_ref().to_string());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

macro_rules! documents {
    ($($t:ty => $root:literal),+ $(,)?) => {
        $(impl Document for $t { const ROOT: &'static str = $root; })+
    };
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// `NetworkType` in the create spec, `NetworkMode` in the entity: same two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    Direct,
    #[serde(rename = "NAT")]
    Nat,
}

/// `POST /cloud/gateways`. Note `ExternalIp` and `NetworkType` (the entity says `ExternalIP` and
/// `NetworkMode`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CreateCloudGatewaySpec")]
pub struct CreateCloudGatewaySpec {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "ServerHostName")]
    pub server_host_name: String,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "ExternalIp", skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
    #[serde(rename = "ExternalPort", skip_serializing_if = "Option::is_none")]
    pub external_port: Option<u16>,
    #[serde(rename = "NetworkType")]
    pub network_type: NetworkMode,
    #[serde(rename = "InternalPort", skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<u16>,
    #[serde(rename = "BackupServerUid")]
    pub backup_server_uid: String,
}

/// `POST /cloud/gatewayPools`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CreateCloudGatewayPoolSpec")]
pub struct CreateCloudGatewayPoolSpec {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "CloudGateways")]
    pub cloud_gateways: CloudGatewayUids,
    #[serde(rename = "CloudTenants", skip_serializing_if = "Option::is_none")]
    pub cloud_tenants: Option<CloudTenantUids>,
    #[serde(rename = "BackupServerUid")]
    pub backup_server_uid: String,
}

/// `PUT /cloud/gateways/{id}`: the entity's element names, without `Links`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CloudGateway")]
pub struct CloudGatewayEdit {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "Enabled", skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(rename = "NetworkMode")]
    pub network_mode: NetworkMode,
    #[serde(rename = "ExternalIP", skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
    #[serde(rename = "ExternalPort", skip_serializing_if = "Option::is_none")]
    pub external_port: Option<u16>,
    #[serde(rename = "InternalPort", skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<u16>,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PUT /cloud/gatewayPools/{id}`: the new name travels in the `Name` attribute; the gateway and
/// tenant lists replace the pool's lists whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CloudGatewayPool")]
pub struct CloudGatewayPoolEdit {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "@Name")]
    pub name: String,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "CloudGateways")]
    pub cloud_gateways: CloudGatewayUids,
    #[serde(rename = "CloudTenants")]
    pub cloud_tenants: CloudTenantUids,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudGatewayUids {
    #[serde(rename = "CloudGatewayUid", default)]
    pub uids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudTenantUids {
    #[serde(rename = "CloudTenantUid", default)]
    pub uids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudGatewayPoolUids {
    #[serde(rename = "CloudGatewayPoolUid", default)]
    pub uids: Vec<String>,
}

/// The `xmlns` attribute of a request root: always EM's namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Namespace;

impl Serialize for Namespace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(NAMESPACE)
    }
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Links {
    #[serde(rename = "Link", default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Link {
    #[serde(rename = "@Href")]
    pub href: String,
    #[serde(rename = "@Rel", default)]
    pub rel: Option<String>,
    #[serde(rename = "@Type", default)]
    pub type_: Option<String>,
    #[serde(rename = "@Name", default)]
    pub name: Option<String>,
}

impl Links {
    /// The first link with this `Rel` (and, when given, this `Type`).
    pub fn find(&self, rel: &str, type_: Option<&str>) -> Option<&Link> {
        self.links.iter().find(|l| {
            l.rel
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel))
                && type_.is_none_or(|t| {
                    l.type_
                        .as_deref()
                        .is_some_and(|lt| lt.eq_ignore_ascii_case(t))
                })
        })
    }
}

/// `State` of an EM task. `OperationFinished` means the backup server is done but EM's database
/// does not have the result yet: still in progress for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TaskState {
    Running,
    OperationFinished,
    Finished,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Task")]
pub struct Task {
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "TaskId")]
    pub task_id: String,
    #[serde(rename = "State")]
    pub state: TaskState,
    #[serde(rename = "Operation", default)]
    pub operation: String,
    #[serde(rename = "Result", default)]
    pub result: Option<TaskResult>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskResult {
    #[serde(rename = "@Success")]
    pub success: bool,
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "Tasks")]
pub struct Tasks {
    #[serde(rename = "Task", default)]
    pub tasks: Vec<Task>,
}

/// EM's `Error` body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Error")]
pub struct Error {
    #[serde(rename = "@Message", default)]
    pub message: Option<String>,
    #[serde(rename = "@StatusCode", default)]
    pub status_code: Option<u16>,
    #[serde(rename = "FirstChanceExceptionMessage", default)]
    pub first_chance_exception_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "LogonSession")]
pub struct LogonSession {
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "UserName", default)]
    pub user_name: Option<String>,
    #[serde(rename = "SessionId")]
    pub session_id: String,
}

/// A reference (`Ref` in lists, `EntityRef` alone).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reference {
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "@Type", default)]
    pub type_: Option<String>,
    #[serde(rename = "Links", default)]
    pub links: Links,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "EntityReferences")]
pub struct EntityReferences {
    #[serde(rename = "Ref", default)]
    pub refs: Vec<Reference>,
}

/// `CloudGateway` entity (`?format=Entity`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudGateway {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "Enabled", default)]
    pub enabled: Option<bool>,
    #[serde(rename = "NetworkMode")]
    pub network_mode: NetworkMode,
    #[serde(rename = "ExternalIP", default)]
    pub external_ip: Option<String>,
    #[serde(rename = "ExternalPort", default)]
    pub external_port: Option<u16>,
    #[serde(rename = "InternalPort", default)]
    pub internal_port: Option<u16>,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "CloudGateways")]
pub struct CloudGateways {
    #[serde(rename = "CloudGateway", default)]
    pub items: Vec<CloudGateway>,
}

/// `CloudGatewayPool` entity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudGatewayPool {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "CloudGateways", default)]
    pub cloud_gateways: CloudGatewayUids,
    #[serde(rename = "CloudTenants", default)]
    pub cloud_tenants: CloudTenantUids,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "CloudGatewayPools")]
pub struct CloudGatewayPools {
    #[serde(rename = "CloudGatewayPool", default)]
    pub items: Vec<CloudGatewayPool>,
}

/// `BackupServer` entity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BackupServer {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "Port", default)]
    pub port: Option<u16>,
    #[serde(rename = "Version", default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "BackupServers")]
pub struct BackupServers {
    #[serde(rename = "BackupServer", default)]
    pub items: Vec<BackupServer>,
}

documents!(
    Task => "Task",
    Tasks => "Tasks",
    Error => "Error",
    LogonSession => "LogonSession",
    EntityReferences => "EntityReferences",
    CloudGateway => "CloudGateway",
    CloudGateways => "CloudGateways",
    CloudGatewayPool => "CloudGatewayPool",
    CloudGatewayPools => "CloudGatewayPools",
    BackupServer => "BackupServer",
    BackupServers => "BackupServers",
    CloudTenant => "CloudTenant",
    CloudTenants => "CloudTenants",
);

// ---------------------------------------------------------------------------------------------
// Cloud Connect tenants, their storage quotas and backup repositories (em-api.md §16)
//
// Only standalone tenants: replication resources, vCD and Active Directory tenants are out of
// scope. Element order is §16's (the valdy XSD's) and is the field order below.
// ---------------------------------------------------------------------------------------------

/// `POST /cloud/tenants`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename = "CreateCloudTenantSpec")]
pub struct CreateCloudTenantSpec {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    /// The tenant's user name; it cannot be changed later.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Optional in EM's table, but a standalone tenant cannot log on without one.
    #[serde(rename = "Password", serialize_with = "expose_password")]
    pub password: SecretString,
    #[serde(rename = "Enabled", skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Becomes the entity's `LeaseOptions Enabled="true" ExpirationDate=…`.
    #[serde(
        rename = "LeaseExpirationDate",
        skip_serializing_if = "Option::is_none",
        serialize_with = "xs_datetime"
    )]
    pub lease_expiration_date: Option<DateTime<Utc>>,
    /// An empty list means the same as none: it is left out.
    #[serde(
        rename = "Resources",
        skip_serializing_if = "BackupResources::is_empty"
    )]
    pub resources: BackupResources,
    #[serde(rename = "ThrottlingEnabled", skip_serializing_if = "Option::is_none")]
    pub throttling_enabled: Option<bool>,
    #[serde(
        rename = "ThrottlingSpeedLimit",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttling_speed_limit: Option<u32>,
    #[serde(
        rename = "ThrottlingSpeedUnit",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttling_speed_unit: Option<ThrottlingSpeedUnit>,
    #[serde(rename = "PublicIpCount", skip_serializing_if = "Option::is_none")]
    pub public_ip_count: Option<u32>,
    /// After the throttling elements, whatever the doc table says (§16.3).
    #[serde(rename = "BackupServerUid")]
    pub backup_server_uid: String,
    #[serde(rename = "MaxConcurrentTasks", skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<u32>,
    #[serde(
        rename = "BackupProtectionEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_protection_enabled: Option<bool>,
    /// Days.
    #[serde(
        rename = "BackupProtectionPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_protection_period: Option<u32>,
    /// Always written: EM's default when it is absent is not documented.
    #[serde(rename = "TenantType")]
    pub tenant_type: CloudTenantType,
    /// EM wants at least one pool when the element is there: an empty list is left out.
    #[serde(
        rename = "CloudGatewayPools",
        skip_serializing_if = "CloudGatewayPoolUids::is_empty"
    )]
    pub cloud_gateway_pools: CloudGatewayPoolUids,
    /// `Others`, not the doc tables' `Other`: EM silently drops the table spelling (§16.3).
    #[serde(
        rename = "FailoverToOthersGatewaysIfFail",
        skip_serializing_if = "Option::is_none"
    )]
    pub failover_to_others_gateways_if_fail: Option<bool>,
}

/// `TenantType` of the create spec: a plain string there (the entity nests elements instead).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum CloudTenantType {
    /// vCD and Active Directory tenants are out of scope.
    #[default]
    Standalone,
}

/// `ThrottlingSpeedUnit`: case matters, `Mbps` is bits and `MBps` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThrottlingSpeedUnit {
    Mbps,
    KBps,
    MBps,
    /// A unit a later EM may add: read, never written.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// `Resources` of the create spec: `BackupResource` items.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackupResources {
    #[serde(rename = "BackupResource")]
    pub items: Vec<CreateCloudTenantResourceSpec>,
}

impl BackupResources {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl CloudGatewayPoolUids {
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }
}

/// A new storage quota: the body of `POST /cloud/tenants/{id}/resources`, and the same type
/// inside the create spec as `BackupResource`. It has no `xmlns` field because it is nested
/// there; [`to_xml_resource_spec`] writes it as a document of its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateCloudTenantResourceSpec {
    /// The cloud repository's name as the tenant sees it.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "RepositoryUid")]
    pub repository_uid: String,
    /// MB, at least 1024. `QuotaMb` here, `Quota` in an existing quota's `RepositoryQuota`.
    #[serde(rename = "QuotaMb")]
    pub quota_mb: u64,
    /// After `QuotaMb`. EM's example sends it empty for none; absent says the same.
    #[serde(rename = "WanAcceleratorUid", skip_serializing_if = "Option::is_none")]
    pub wan_accelerator_uid: Option<String>,
}

/// The root of `POST /cloud/tenants/{id}/resources`: the spec's elements under a root with EM's
/// namespace. `flatten` turns it into a map, which has no name of its own: the root's name is
/// given when it is written.
#[derive(Serialize)]
struct ResourceSpecDocument<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: Namespace,
    #[serde(flatten)]
    spec: &'a CreateCloudTenantResourceSpec,
}

/// Serializes a [`CreateCloudTenantResourceSpec`] as the root document of
/// `POST /cloud/tenants/{id}/resources`, with EM's namespace.
pub fn to_xml_resource_spec(
    spec: &CreateCloudTenantResourceSpec,
) -> Result<String, quick_xml::SeError> {
    let mut out = String::from(DECLARATION);
    out.push_str(&quick_xml::se::to_string_with_root(
        "CreateCloudTenantResourceSpec",
        &ResourceSpecDocument {
            xmlns: Namespace,
            spec,
        },
    )?);
    Ok(out)
}

/// `PUT /cloud/tenants/{id}`: the entity's element names and order (§16.4). Every `None` is
/// left out and keeps EM's value; `TenantType` is always there (EM answers a PUT without it
/// with a 500).
#[derive(Debug, Clone, Serialize)]
#[serde(rename = "CloudTenant")]
pub struct CloudTenantEdit {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    /// Only when it changes. An empty one is left out too: EM reads `<Password/>` as "unchanged"
    /// (every GET carries one).
    #[serde(
        rename = "Password",
        skip_serializing_if = "unchanged_password",
        serialize_with = "expose_new_password"
    )]
    pub password: Option<SecretString>,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "Enabled", skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Not `LeaseExpirationDate` (the PUT table's name): the entity has attributes.
    #[serde(rename = "LeaseOptions", skip_serializing_if = "Option::is_none")]
    pub lease_options: Option<LeaseOptions>,
    /// Existing quotas to change, by `Id`; quotas not listed are kept, so an empty list is left
    /// out. New quotas are added with `POST …/resources`.
    #[serde(
        rename = "Resources",
        skip_serializing_if = "CloudTenantResourceEdits::is_empty"
    )]
    pub resources: CloudTenantResourceEdits,
    #[serde(rename = "ThrottlingEnabled", skip_serializing_if = "Option::is_none")]
    pub throttling_enabled: Option<bool>,
    #[serde(
        rename = "ThrottlingSpeedLimit",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttling_speed_limit: Option<u32>,
    #[serde(
        rename = "ThrottlingSpeedUnit",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttling_speed_unit: Option<ThrottlingSpeedUnit>,
    #[serde(rename = "PublicIpCount", skip_serializing_if = "Option::is_none")]
    pub public_ip_count: Option<u32>,
    #[serde(rename = "MaxConcurrentTasks", skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<u32>,
    #[serde(
        rename = "BackupProtectionEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_protection_enabled: Option<bool>,
    #[serde(
        rename = "BackupProtectionPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_protection_period: Option<u32>,
    /// Written as `TenantType/StandaloneTenant/TenantCredentials/Username`. EM ignores a
    /// changed user name: a tenant cannot be renamed.
    #[serde(rename = "TenantType", serialize_with = "standalone_tenant_type")]
    pub username: String,
    /// `None`: the pools stay as they are. `Some`: they are replaced by this list, and an empty
    /// list (`<CloudGatewayPools/>`) means no pools, i.e. automatic gateway selection.
    #[serde(rename = "CloudGatewayPools", skip_serializing_if = "Option::is_none")]
    pub cloud_gateway_pools: Option<CloudGatewayPoolUids>,
    #[serde(
        rename = "FailoverToOthersGatewaysIfFail",
        skip_serializing_if = "Option::is_none"
    )]
    pub failover_to_others_gateways_if_fail: Option<bool>,
}

impl CloudTenantEdit {
    /// An edit that changes nothing yet, for the tenant with this user name.
    pub fn new(username: impl Into<String>) -> Self {
        CloudTenantEdit {
            xmlns: Namespace,
            password: None,
            description: None,
            enabled: None,
            lease_options: None,
            resources: CloudTenantResourceEdits::default(),
            throttling_enabled: None,
            throttling_speed_limit: None,
            throttling_speed_unit: None,
            public_ip_count: None,
            max_concurrent_tasks: None,
            backup_protection_enabled: None,
            backup_protection_period: None,
            username: username.into(),
            cloud_gateway_pools: None,
            failover_to_others_gateways_if_fail: None,
        }
    }
}

/// `LeaseOptions`: attributes only. `ExpirationDate` goes with `Enabled="true"` alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOptions {
    #[serde(rename = "@Enabled", default)]
    pub enabled: bool,
    #[serde(
        rename = "@ExpirationDate",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "xs_datetime",
        deserialize_with = "read_datetime"
    )]
    pub expiration_date: Option<DateTime<Utc>>,
}

impl LeaseOptions {
    /// No lease: the tenant never expires.
    pub fn none() -> Self {
        LeaseOptions {
            enabled: false,
            expiration_date: None,
        }
    }

    pub fn until(at: DateTime<Utc>) -> Self {
        LeaseOptions {
            enabled: true,
            expiration_date: Some(at),
        }
    }

    /// When the lease ends, if there is one.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.expiration_date.filter(|_| self.enabled)
    }
}

/// `Resources` of the PUT: the quotas to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CloudTenantResourceEdits {
    #[serde(rename = "CloudTenantResource")]
    pub items: Vec<CloudTenantResourceEdit>,
}

impl CloudTenantResourceEdits {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// One existing quota in a PUT, named by its `Id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudTenantResourceEdit {
    #[serde(rename = "@Id")]
    pub id: Uuid,
    #[serde(rename = "RepositoryQuota")]
    pub repository_quota: RepositoryQuota,
}

impl From<&CloudTenantResource> for CloudTenantResourceEdit {
    /// The quota as it is, to change from there (its `UsedQuota` is never sent).
    fn from(r: &CloudTenantResource) -> Self {
        CloudTenantResourceEdit {
            id: r.id,
            repository_quota: r.repository_quota.clone(),
        }
    }
}

/// `RepositoryQuota` of an existing quota, read and (in a PUT) written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryQuota {
    #[serde(rename = "DisplayName", default)]
    pub display_name: String,
    #[serde(rename = "RepositoryUid", default)]
    pub repository_uid: String,
    /// Read: `None` for none (EM may write it empty). Written: `None` keeps the accelerator,
    /// `Some("")` (an empty element) removes it.
    #[serde(
        rename = "WanAcceleratorUid",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_none"
    )]
    pub wan_accelerator_uid: Option<String>,
    /// MB.
    #[serde(rename = "Quota")]
    pub quota: u64,
    /// MB; output only.
    #[serde(rename = "UsedQuota", default, skip_serializing)]
    pub used_quota: Option<u64>,
}

/// A storage quota (`GET …/resources[/{rid}]`, and inside the entity without `Links`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudTenantResource {
    /// The bare guid, as the URL wants it.
    #[serde(rename = "@Id")]
    pub id: Uuid,
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "RepositoryQuota")]
    pub repository_quota: RepositoryQuota,
}

/// `CloudTenantResources`, and the entity's `Resources` (same items).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "CloudTenantResources")]
pub struct CloudTenantResources {
    #[serde(rename = "CloudTenantResource", default)]
    pub items: Vec<CloudTenantResource>,
}

/// `CloudTenant` entity, every child of §16.2 but those of replication and vCD
/// (`ComputeResources`, `VCloudComputeResources`) and the always empty `Password`. Read
/// leniently: EM leaves elements out (`CloudGatewayPools` when there are none,
/// `FailoverToOthersGatewaysIfFail` until set, `VmCount`), so nearly all are optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudTenant {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "Enabled", default)]
    pub enabled: Option<bool>,
    #[serde(rename = "LeaseOptions", default)]
    pub lease_options: Option<LeaseOptions>,
    #[serde(rename = "Resources", default)]
    pub resources: CloudTenantResources,
    #[serde(rename = "LastResult", default)]
    pub last_result: Option<String>,
    /// `None` when the tenant never connected: EM writes `1753-01-01T00:00:00Z` then.
    #[serde(rename = "LastActive", default, deserialize_with = "read_last_active")]
    pub last_active: Option<DateTime<Utc>>,
    #[serde(rename = "VmCount", default)]
    pub vm_count: Option<u32>,
    #[serde(rename = "ThrottlingEnabled", default)]
    pub throttling_enabled: Option<bool>,
    #[serde(rename = "ThrottlingSpeedLimit", default)]
    pub throttling_speed_limit: Option<u32>,
    #[serde(rename = "ThrottlingSpeedUnit", default)]
    pub throttling_speed_unit: Option<ThrottlingSpeedUnit>,
    #[serde(rename = "PublicIpCount", default)]
    pub public_ip_count: Option<u32>,
    #[serde(rename = "BackupCount", default)]
    pub backup_count: Option<u32>,
    #[serde(rename = "ReplicaCount", default)]
    pub replica_count: Option<u32>,
    #[serde(rename = "MaxConcurrentTasks", default)]
    pub max_concurrent_tasks: Option<u32>,
    #[serde(rename = "WorkStationBackupCount", default)]
    pub work_station_backup_count: Option<u32>,
    #[serde(rename = "ServerBackupCount", default)]
    pub server_backup_count: Option<u32>,
    #[serde(rename = "BackupProtectionEnabled", default)]
    pub backup_protection_enabled: Option<bool>,
    /// Days.
    #[serde(rename = "BackupProtectionPeriod", default)]
    pub backup_protection_period: Option<u32>,
    #[serde(rename = "TenantType", default)]
    pub tenant_type: Option<TenantType>,
    /// Empty when EM leaves the element out (it does when the tenant has no pools).
    #[serde(rename = "CloudGatewayPools", default)]
    pub cloud_gateway_pools: CloudGatewayPoolUids,
    #[serde(rename = "FailoverToOthersGatewaysIfFail", default)]
    pub failover_to_others_gateways_if_fail: Option<bool>,
}

impl CloudTenant {
    /// The user name of a standalone tenant (the same as `name` in every capture).
    pub fn username(&self) -> Option<&str> {
        self.tenant_type
            .as_ref()?
            .standalone_tenant
            .as_ref()?
            .tenant_credentials
            .as_ref()?
            .username
            .as_deref()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "CloudTenants")]
pub struct CloudTenants {
    #[serde(rename = "CloudTenant", default)]
    pub items: Vec<CloudTenant>,
}

/// The entity's `TenantType`: a choice of elements. vCD (`vCloudTenant`) and AD
/// (`ADTenantType`) tenants read with none of them set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantType {
    #[serde(
        rename = "StandaloneTenant",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub standalone_tenant: Option<StandaloneTenant>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StandaloneTenant {
    #[serde(
        rename = "TenantCredentials",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tenant_credentials: Option<TenantCredentials>,
}

/// Only the user name: a password here is not how EM changes it (the entity's own
/// `Password` is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantCredentials {
    #[serde(rename = "Username", default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl TenantType {
    pub fn standalone(username: impl Into<String>) -> Self {
        TenantType {
            standalone_tenant: Some(StandaloneTenant {
                tenant_credentials: Some(TenantCredentials {
                    username: Some(username.into()),
                }),
            }),
        }
    }
}

/// A backup repository (`GET /repositories/{id}?format=Entity`). Sizes in bytes, as EM reports
/// them (quotas are in MB).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Repository {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    /// `Up` names the backup server.
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "Capacity", default)]
    pub capacity: Option<u64>,
    #[serde(rename = "FreeSpace", default)]
    pub free_space: Option<u64>,
    /// `WindowsLocal`, `LinuxLocal`, …, `Extendable` (scale-out); kept as EM writes it.
    #[serde(rename = "Kind", default, deserialize_with = "text_or_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "Repositories")]
pub struct Repositories {
    #[serde(rename = "Repository", default)]
    pub items: Vec<Repository>,
}

documents!(
    CloudTenantResource => "CloudTenantResource",
    CloudTenantResources => "CloudTenantResources",
    Repository => "Repository",
    Repositories => "Repositories",
);

// -- how the values above are written and read -------------------------------------------------

/// A password as element text. Nothing else exposes it: `Debug` of the types holding one shows
/// secrecy's `[REDACTED]`.
fn expose_password<S: serde::Serializer>(password: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(password.expose_secret())
}

fn expose_new_password<S: serde::Serializer>(
    password: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match password {
        Some(p) => s.serialize_str(p.expose_secret()),
        None => s.serialize_none(),
    }
}

fn unchanged_password(password: &Option<SecretString>) -> bool {
    password
        .as_ref()
        .is_none_or(|p| p.expose_secret().is_empty())
}

fn standalone_tenant_type<U, S>(username: &U, s: S) -> Result<S::Ok, S::Error>
where
    U: AsRef<str> + ?Sized,
    S: serde::Serializer,
{
    TenantType::standalone(username.as_ref()).serialize(s)
}

/// An `xs:dateTime` in UTC, `2099-12-31T00:00:00Z` (fractions only when there are some).
fn xs_datetime<S: serde::Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        None => s.serialize_none(),
    }
}

/// An `xs:dateTime` as EM writes them: with `Z` or an offset, with or without fractions, or
/// without an offset (then UTC, as EM's own examples mean it).
pub fn parse_xs_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|at| at.and_utc())
}

fn read_datetime<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => parse_xs_datetime(text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("[{text}] is not an xs:dateTime"))),
    }
}

/// EM's "never": SQL Server's smallest date, 1753-01-01 (or .NET's, year 1).
fn read_last_active<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(read_datetime(d)?.filter(|at| at.year() > 1753))
}

/// Text, with an empty element read as absent.
fn text_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|t| !t.trim().is_empty()))
}

/// The bare guid at the end of a `urn:veeam:<Type>:<guid>` UID (or of an Href path).
pub fn id_of(uid_or_href: &str) -> &str {
    let path = uid_or_href.split(['?', '#']).next().unwrap_or(uid_or_href);
    path.rsplit([':', '/']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_takes_the_guid_from_uids_and_hrefs() {
        assert_eq!(id_of("urn:veeam:CloudGateway:abc-1"), "abc-1");
        assert_eq!(
            id_of("https://em:9398/api/cloud/gateways/abc-1?format=Entity"),
            "abc-1"
        );
        assert_eq!(id_of("abc-1"), "abc-1");
    }

    #[test]
    fn reads_a_finished_task_with_its_related_link() {
        let xml = r#"<Task xmlns="http://www.veeam.com/ent/v1.0" Href="https://em/api/tasks/task-4" Type="Task">
  <Links>
    <Link Href="https://em/api/tasks/task-4" Rel="Delete"/>
    <Link Href="https://em/api/cloud/gateways/3f2a?format=Entity" Name="" Type="CloudGateway" Rel="Related"/>
  </Links>
  <TaskId>task-4</TaskId><State>Finished</State><Operation>CreateCloudGateway</Operation>
  <Result Success="true"><Message>Ok</Message></Result></Task>"#;
        let task: Task = from_xml(xml).unwrap();
        assert_eq!(task.state, TaskState::Finished);
        assert!(task.result.as_ref().unwrap().success);
        let related = task.links.find("Related", None).unwrap();
        assert_eq!(id_of(&related.href), "3f2a");
    }

    #[test]
    fn an_unknown_task_state_does_not_fail_the_parse() {
        let xml =
            r#"<Task><TaskId>task-1</TaskId><State>Queued</State><Operation>X</Operation></Task>"#;
        let task: Task = from_xml(xml).unwrap();
        assert_eq!(task.state, TaskState::Unknown);
        assert!(task.result.is_none());
    }

    #[test]
    fn an_answer_with_another_root_is_refused() {
        let html = "<html><body><h1>Welcome</h1></body></html>";
        let err = from_xml::<BackupServers>(html).unwrap_err().to_string();
        assert!(
            err.contains("expected a <BackupServers> document, got <html>"),
            "{err}"
        );
        assert!(from_xml::<Tasks>("not xml at all").is_err());
        assert!(from_xml::<Tasks>(r#"<?xml version="1.0"?><!-- c --><Tasks xmlns="x"/>"#).is_ok());
    }

    #[test]
    fn reads_an_error_body() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<Error xmlns="http://www.veeam.com/ent/v1.0" Message="Cloud gateway pool name must be unique." StatusCode="400">
  <FirstChanceExceptionMessage>Cloud gateway pool name must be unique.</FirstChanceExceptionMessage>
</Error>"#;
        let err: Error = from_xml(xml).unwrap();
        assert_eq!(err.status_code, Some(400));
        assert_eq!(
            err.message.as_deref(),
            Some("Cloud gateway pool name must be unique.")
        );
    }

    /// §16.2's example, with a real link where it writes `…`.
    const TENANT_ENTITY: &str = r#"<CloudTenant Href="https://em.example.local:9398/api/cloud/tenants/3f2a1c10-0000-4000-8000-00000000e901?format=Entity" Type="CloudTenant" Name="tenant-alpha" UID="urn:veeam:CloudTenant:3f2a1c10-0000-4000-8000-00000000e901" xmlns="http://www.veeam.com/ent/v1.0">
  <Links><Link Href="https://em.example.local:9398/api/backupServers/3f2a1c10-0000-4000-8000-00000000b501" Name="vbr01.example.local" Type="BackupServerReference" Rel="Up"/></Links>
  <Password/>
  <Description>Tenant account for ABC Company</Description>
  <Enabled>true</Enabled>
  <LeaseOptions Enabled="false"/>
  <Resources>
    <CloudTenantResource Type="CloudTenantResource" Href="https://em.example.local:9398/api/cloud/tenants/3f2a1c10-0000-4000-8000-00000000e901/resources/3f2a1c10-0000-4000-8000-00000000e911" Id="3f2a1c10-0000-4000-8000-00000000e911">
      <RepositoryQuota>
        <DisplayName>Cloud Repository</DisplayName>
        <RepositoryUid>urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101</RepositoryUid>
        <Quota>102400</Quota>
        <UsedQuota>0</UsedQuota>
      </RepositoryQuota>
    </CloudTenantResource>
  </Resources>
  <LastResult>Success</LastResult>
  <LastActive>1753-01-01T00:00:00Z</LastActive>
  <ComputeResources/>
  <ThrottlingEnabled>false</ThrottlingEnabled><ThrottlingSpeedLimit>1</ThrottlingSpeedLimit><ThrottlingSpeedUnit>Mbps</ThrottlingSpeedUnit>
  <PublicIpCount>0</PublicIpCount><BackupCount>0</BackupCount><ReplicaCount>0</ReplicaCount>
  <MaxConcurrentTasks>1</MaxConcurrentTasks><WorkStationBackupCount>0</WorkStationBackupCount><ServerBackupCount>0</ServerBackupCount>
  <BackupProtectionEnabled>false</BackupProtectionEnabled><BackupProtectionPeriod>1</BackupProtectionPeriod>
  <TenantType><StandaloneTenant><TenantCredentials><Username>tenant-alpha</Username></TenantCredentials></StandaloneTenant></TenantType>
</CloudTenant>"#;

    #[test]
    fn reads_the_documented_tenant_entity() {
        let t: CloudTenant = from_xml(TENANT_ENTITY).unwrap();
        assert_eq!(t.name, "tenant-alpha");
        assert_eq!(id_of(&t.uid), "3f2a1c10-0000-4000-8000-00000000e901");
        assert!(t.links.find("Up", Some("BackupServerReference")).is_some());
        assert_eq!(
            t.description.as_deref(),
            Some("Tenant account for ABC Company")
        );
        assert_eq!(t.enabled, Some(true));
        assert_eq!(t.lease_options, Some(LeaseOptions::none()));
        let q = &t.resources.items[0];
        assert_eq!(q.id.to_string(), "3f2a1c10-0000-4000-8000-00000000e911");
        assert_eq!(q.repository_quota.display_name, "Cloud Repository");
        assert_eq!(q.repository_quota.wan_accelerator_uid, None);
        assert_eq!(
            (q.repository_quota.quota, q.repository_quota.used_quota),
            (102400, Some(0))
        );
        assert_eq!(t.last_result.as_deref(), Some("Success"));
        assert_eq!(t.last_active, None, "1753-01-01 is never");
        assert_eq!(t.vm_count, None);
        assert_eq!(t.throttling_speed_unit, Some(ThrottlingSpeedUnit::Mbps));
        assert_eq!(
            (
                t.throttling_enabled,
                t.throttling_speed_limit,
                t.public_ip_count
            ),
            (Some(false), Some(1), Some(0))
        );
        assert_eq!((t.backup_count, t.replica_count), (Some(0), Some(0)));
        assert_eq!(t.max_concurrent_tasks, Some(1));
        assert_eq!(
            (t.work_station_backup_count, t.server_backup_count),
            (Some(0), Some(0))
        );
        assert_eq!(
            (t.backup_protection_enabled, t.backup_protection_period),
            (Some(false), Some(1))
        );
        assert_eq!(t.username(), Some("tenant-alpha"));
        assert!(t.cloud_gateway_pools.uids.is_empty(), "absent: none");
        assert_eq!(t.failover_to_others_gateways_if_fail, None);
    }

    /// What other EMs write: dates without an offset or with fractions, a real `LastActive`,
    /// elements this client does not know, an empty `WanAcceleratorUid`, units and tenant
    /// types it does not model.
    #[test]
    fn reads_what_em_varies() {
        let entity = TENANT_ENTITY
            .replace(
                r#"<LeaseOptions Enabled="false"/>"#,
                r#"<LeaseOptions Enabled="true" ExpirationDate="2099-12-31T00:00:00"/>"#,
            )
            .replace(
                "<Quota>102400</Quota>",
                "<WanAcceleratorUid/><Quota>102400</Quota>",
            )
            .replace("1753-01-01T00:00:00Z", "2020-02-03T14:20:27.177+01:00")
            .replace(
                "<ComputeResources/>",
                "<ComputeResources/><SomethingNew><Deep>1</Deep></SomethingNew>",
            )
            .replace(">Mbps<", ">Gbps<")
            .replace(
                "</TenantType>",
                "</TenantType><CloudGatewayPools><CloudGatewayPoolUid>urn:veeam:CloudGatewayPool:a</CloudGatewayPoolUid><CloudGatewayPoolUid>urn:veeam:CloudGatewayPool:b</CloudGatewayPoolUid></CloudGatewayPools><FailoverToOthersGatewaysIfFail>false</FailoverToOthersGatewaysIfFail>",
            );
        let t: CloudTenant = from_xml(&entity).unwrap();
        let lease = t.lease_options.unwrap();
        assert_eq!(
            lease.expires(),
            parse_xs_datetime("2099-12-31T00:00:00Z"),
            "no offset: UTC"
        );
        assert_eq!(
            t.resources.items[0].repository_quota.wan_accelerator_uid,
            None
        );
        assert_eq!(t.last_active, parse_xs_datetime("2020-02-03T13:20:27.177Z"));
        assert_eq!(t.throttling_speed_unit, Some(ThrottlingSpeedUnit::Unknown));
        assert_eq!(t.cloud_gateway_pools.uids.len(), 2);
        assert_eq!(t.failover_to_others_gateways_if_fail, Some(false));

        let vcd = TENANT_ENTITY.replace(
            "<StandaloneTenant><TenantCredentials><Username>tenant-alpha</Username></TenantCredentials></StandaloneTenant>",
            "<vCloudTenant><VCloudOrganizationUid>x</VCloudOrganizationUid></vCloudTenant>",
        );
        let t: CloudTenant = from_xml(&vcd).unwrap();
        assert_eq!(t.username(), None);

        let bad = TENANT_ENTITY.replace(
            r#"<LeaseOptions Enabled="false"/>"#,
            r#"<LeaseOptions Enabled="true" ExpirationDate="31.12.2099"/>"#,
        );
        let err = from_xml::<CloudTenant>(&bad).unwrap_err().to_string();
        assert!(err.contains("[31.12.2099] is not an xs:dateTime"), "{err}");
    }

    #[test]
    fn a_unit_only_read_is_never_written() {
        let mut edit = CloudTenantEdit::new("a");
        edit.throttling_speed_unit = Some(ThrottlingSpeedUnit::Unknown);
        assert!(to_xml(&edit).is_err());
    }

    #[test]
    fn reads_quotas_and_repositories() {
        let quotas = r#"<CloudTenantResources xmlns="http://www.veeam.com/ent/v1.0">
  <CloudTenantResource Type="CloudTenantResource" Href="https://em/api/cloud/tenants/t/resources/3f2a1c10-0000-4000-8000-00000000e911" Id="3f2a1c10-0000-4000-8000-00000000e911">
    <Links><Link Href="https://em/api/cloud/tenants/t/resources/3f2a1c10-0000-4000-8000-00000000e911" Name="Cloud Repository" Type="CloudTenantResource" Rel="Delete"/></Links>
    <RepositoryQuota><DisplayName>Cloud Repository</DisplayName><RepositoryUid>urn:veeam:Repository:r</RepositoryUid><WanAcceleratorUid>urn:veeam:WanAccelerator:w</WanAcceleratorUid><Quota>307200</Quota><UsedQuota>20480</UsedQuota></RepositoryQuota>
  </CloudTenantResource>
</CloudTenantResources>"#;
        let list: CloudTenantResources = from_xml(quotas).unwrap();
        let q = &list.items[0];
        assert!(q.links.find("Delete", None).is_some());
        assert_eq!(
            q.repository_quota.wan_accelerator_uid.as_deref(),
            Some("urn:veeam:WanAccelerator:w")
        );
        assert_eq!(q.repository_quota.used_quota, Some(20480));
        assert!(
            from_xml::<CloudTenantResources>(r#"<CloudTenantResources/>"#)
                .unwrap()
                .items
                .is_empty()
        );

        // §16.9's example sizes: bytes, beyond 32 bits.
        let repositories = r#"<Repositories xmlns="http://www.veeam.com/ent/v1.0">
  <Repository Href="https://em/api/repositories/r?format=Entity" Type="Repository" Name="Backup Repository 1" UID="urn:veeam:Repository:r">
    <Links><Link Href="https://em/api/backupServers/b" Name="vbr01" Type="BackupServerReference" Rel="Up"/></Links>
    <Capacity>1079639011328</Capacity><FreeSpace>881812750336</FreeSpace><Kind>WindowsLocal</Kind>
  </Repository>
  <Repository Type="Repository" Name="old" UID="urn:veeam:Repository:s"><Capacity>1</Capacity><FreeSpace>0</FreeSpace></Repository>
</Repositories>"#;
        let list: Repositories = from_xml(repositories).unwrap();
        assert_eq!(list.items[0].capacity, Some(1_079_639_011_328));
        assert_eq!(list.items[0].free_space, Some(881_812_750_336));
        assert_eq!(list.items[0].kind.as_deref(), Some("WindowsLocal"));
        assert_eq!(list.items[1].kind, None, "Kind is 0..1");
    }
}
