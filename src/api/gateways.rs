//! `/v1/cloud-gateways`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use uuid::Uuid;

use crate::tasks::Command;

use super::extract::{Body, Reader, Request, Writer};
use super::problem::{ApiError, Problem, Problems};
use super::tasks::{submit, submit_without_body};
use super::views::{CloudGatewayPage, CloudGatewayView, Paging, Query, page, uid_filter};
use super::{AppState, request};
use crate::domain::{
    BackupServerUid, CloudGatewayChange, Description, FieldErrors, HostName, Metadata, Network,
    NetworkType, NewCloudGateway, Port, TaskView,
};

/// Creates a cloud gateway (EM's `CreateCloudGatewaySpec`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "backup_server_uid": "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d",
    "server_host_name": "srv01.tech.local", "description": "Cloud gateway server 01",
    "network_type": "direct", "external_ip": null, "external_port": 6180, "internal_port": 6180,
    "metadata": {"order": "42"}}))]
pub struct CreateCloudGatewayRequest {
    /// The backup server: `urn:veeam:BackupServer:<guid>` or the bare guid.
    #[schema(required = true, nullable = false, value_type = BackupServerUid)]
    pub backup_server_uid: Option<String>,
    /// DNS name or IP address of a managed server of that backup server.
    #[schema(required = true, nullable = false, value_type = HostName)]
    pub server_host_name: Option<String>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// `direct` (default) or `nat`.
    #[schema(value_type = Option<NetworkType>)]
    pub network_type: Option<String>,
    /// The NAT device's external IP address or DNS name; required for `nat`.
    #[schema(value_type = Option<HostName>)]
    pub external_ip: Option<String>,
    /// Default 6180.
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 65535)]
    pub external_port: Option<i64>,
    /// Default 6180.
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 65535)]
    pub internal_port: Option<i64>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<BTreeMap<String, String>>,
}

pub(super) fn required<'a>(
    errors: &mut FieldErrors,
    field: &str,
    value: &'a Option<String>,
) -> Option<&'a str> {
    match value.as_deref() {
        Some(v) => Some(v),
        None => {
            errors.add(field, "is required");
            None
        }
    }
}

pub(super) fn port(errors: &mut FieldErrors, field: &str, value: Option<i64>) -> Option<Port> {
    match value {
        None => Some(Port::CLOUD_GATEWAY_DEFAULT),
        Some(n) => errors.check(field, Port::parse(n)),
    }
}

/// `nat` needs `external_ip`, and `external_ip` is for `nat` only (see [`network`]).
fn network_rules() -> [serde_json::Value; 2] {
    use request::{equals, given};
    [
        json!({"if": equals("network_type", "nat"), "then": given("external_ip", "string")}),
        json!({"if": given("external_ip", "string"), "then": equals("network_type", "nat")}),
    ]
}

impl request::CrossFieldRules for CreateCloudGatewayRequest {
    fn rules() -> Vec<serde_json::Value> {
        network_rules().into()
    }
}

impl request::CrossFieldRules for UpdateCloudGatewayRequest {
    fn rules() -> Vec<serde_json::Value> {
        let mut rules = Vec::from(network_rules());
        rules.push(request::one_of_given(&[
            ("enabled", "boolean"),
            ("description", "string"),
            ("network_type", "string"),
            ("external_port", "integer"),
            ("internal_port", "integer"),
        ]));
        rules
    }
}

pub(super) fn network(
    errors: &mut FieldErrors,
    network_type: Option<&str>,
    external_ip: Option<&str>,
) -> Option<Network> {
    match NetworkType::parse(network_type.unwrap_or("direct")) {
        Some(NetworkType::Direct) if external_ip.is_some() => {
            errors.add("external_ip", "is only for network_type nat");
            None
        }
        Some(NetworkType::Direct) => Some(Network::Direct),
        Some(NetworkType::Nat) => match external_ip {
            None => {
                errors.add("external_ip", "is required when network_type is nat");
                None
            }
            Some(ip) => errors
                .check("external_ip", HostName::parse(ip))
                .map(|external_ip| Network::Nat { external_ip }),
        },
        None => {
            errors.add(
                "network_type",
                format!("must be {}", NetworkType::choices()),
            );
            None
        }
    }
}

impl Request for CreateCloudGatewayRequest {
    type Value = (NewCloudGateway, Metadata);

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let backup_server = required(&mut e, "backup_server_uid", &self.backup_server_uid)
            .and_then(|v| e.check("backup_server_uid", BackupServerUid::parse(v)));
        let host = required(&mut e, "server_host_name", &self.server_host_name)
            .and_then(|v| e.check("server_host_name", HostName::parse(v)));
        let description = match &self.description {
            Some(d) => e.check("description", Description::parse(d)).map(Some),
            None => Some(None),
        };
        let network = network(
            &mut e,
            self.network_type.as_deref(),
            self.external_ip.as_deref(),
        );
        let external_port = port(&mut e, "external_port", self.external_port);
        let internal_port = port(&mut e, "internal_port", self.internal_port);
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        match (
            backup_server,
            host,
            description,
            network,
            external_port,
            internal_port,
        ) {
            (
                Some(backup_server),
                Some(host),
                Some(description),
                Some(network),
                Some(external_port),
                Some(internal_port),
            ) if e.is_empty() => Ok((
                NewCloudGateway {
                    backup_server,
                    host,
                    description,
                    network,
                    external_port,
                    internal_port,
                },
                metadata,
            )),
            _ => Err(ApiError::Invalid(e.into_vec())),
        }
    }
}

/// Creates a cloud gateway on a backup server. Answers at once with a task; EM does the work.
#[utoipa::path(post, path = "/v1/cloud-gateways", tag = "cloud gateways",
    operation_id = "createCloudGateway", request_body = CreateCloudGatewayRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "Malformed, or EM refused the request (the problem's `em` holds EM's message)"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "A field names an object Enterprise Manager does not have (`errors` says which), or a request with this `Idempotency-Key` is still in progress"),
        Problems::<502>,
    ))]
pub async fn create(
    key: Writer,
    body: Body<CreateCloudGatewayRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    submit(&req, &state, &key, body, Command::CreateCloudGateway).await
}

/// Changes a cloud gateway. Fields left out keep what EM has.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false, "description": "maintenance window"}), min_properties = 1)]
pub struct UpdateCloudGatewayRequest {
    pub enabled: Option<bool>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// `direct` or `nat`; `nat` needs `external_ip`.
    #[schema(value_type = Option<NetworkType>)]
    pub network_type: Option<String>,
    #[schema(value_type = Option<HostName>)]
    pub external_ip: Option<String>,
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 65535)]
    pub external_port: Option<i64>,
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 65535)]
    pub internal_port: Option<i64>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl Request for UpdateCloudGatewayRequest {
    type Value = (CloudGatewayChange, Metadata);

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let description = self
            .description
            .as_deref()
            .and_then(|d| e.check("description", Description::parse(d)));
        let network = match (self.network_type.as_deref(), self.external_ip.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => {
                e.add("external_ip", "needs network_type (nat) beside it");
                None
            }
            (Some(kind), ip) => network(&mut e, Some(kind), ip),
        };
        let external_port = self
            .external_port
            .and_then(|p| e.check("external_port", Port::parse(p)));
        let internal_port = self
            .internal_port
            .and_then(|p| e.check("internal_port", Port::parse(p)));
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        let change = CloudGatewayChange {
            enabled: self.enabled,
            description,
            network,
            external_port,
            internal_port,
        };
        if e.is_empty() && change == CloudGatewayChange::default() {
            e.add("body", "names nothing to change");
        }
        if !e.is_empty() {
            return Err(ApiError::Invalid(e.into_vec()));
        }
        Ok((change, metadata))
    }
}

pub(super) fn path_id<K: crate::domain::UidKind>(text: &str, what: &str) -> Result<Uuid, ApiError> {
    crate::domain::Uid::<K>::parse(text)
        .map(|u| u.id())
        .map_err(|_| ApiError::NotFound(format!("no {what} {text}")))
}

/// Lists cloud gateways, with filters.
#[utoipa::path(get, path = "/v1/cloud-gateways", tag = "cloud gateways",
    operation_id = "listCloudGateways",
    params(
        ("backup_server_uid" = Option<Uuid>, Query, description = "Only gateways of this backup server (its guid; the UID is accepted too)"),
        ("pool_uid" = Option<Uuid>, Query, description = "Only gateways in this pool (its guid; the UID is accepted too)"),
        ("name" = Option<String>, Query, description = "Only names containing this (case-insensitive)"),
        ("enabled" = Option<bool>, Query, description = "Only enabled (true) or disabled (false) gateways"),
        Paging,
    ),
    responses(
        (status = 200, body = CloudGatewayPage, description = "One page, sorted by id"),
        Problems::<400, 502>,
    ))]
pub async fn list(
    _: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let server = q.take(
        "backup_server_uid",
        uid_filter::<crate::domain::BackupServer>,
    );
    let pool = q.take("pool_uid", uid_filter::<crate::domain::CloudGatewayPool>);
    let name = q.name();
    let enabled = q.flag("enabled");
    let (limit, cursor) = q.paging();
    q.finish()?;
    let items: Vec<CloudGatewayView> = state
        .em
        .cloud_gateways()
        .await?
        .iter()
        .map(CloudGatewayView::from)
        .filter(|g| server.is_none_or(|s| g.backup_server.as_ref().is_some_and(|b| b.id == s)))
        .filter(|g| pool.is_none_or(|p| g.pool.as_ref().is_some_and(|x| x.id == p)))
        .filter(|g| name.as_ref().is_none_or(|n| n.matches(&g.name)))
        .filter(|g| enabled.is_none_or(|e| g.enabled == Some(e)))
        .collect();
    Ok(HttpResponse::Ok().json(CloudGatewayPage::from(page(items, |g| g.id, limit, cursor))))
}

/// Reads one cloud gateway.
#[utoipa::path(get, path = "/v1/cloud-gateways/{id}", tag = "cloud gateways",
    operation_id = "getCloudGateway",
    params(("id" = Uuid, Path, description = "The gateway's guid (its UID is accepted too)")),
    responses(
        (status = 200, body = CloudGatewayView, description = "The gateway"),
        Problems::<404, 502>,
    ))]
pub async fn get(
    _: Reader,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<crate::domain::CloudGateway>(&id, "cloud gateway")?;
    let gateway = state
        .em
        .cloud_gateway(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cloud gateway {id}")))?;
    Ok(HttpResponse::Ok().json(CloudGatewayView::from(&gateway)))
}

/// Changes a cloud gateway (EM's PUT of the whole entity). Answers at once with a task.
#[utoipa::path(patch, path = "/v1/cloud-gateways/{id}", tag = "cloud gateways",
    operation_id = "updateCloudGateway",
    params(("id" = Uuid, Path, description = "The gateway's guid (its UID is accepted too)")),
    request_body = UpdateCloudGatewayRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "Malformed, or EM refused the request (the problem's `em` holds EM's message)"),
        Problems::<404, 502>,
    ))]
pub async fn update(
    key: Writer,
    body: Body<UpdateCloudGatewayRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<crate::domain::CloudGateway>(&id, "cloud gateway")?;
    submit(&req, &state, &key, body, |change| {
        Command::UpdateCloudGateway(id, change)
    })
    .await
}

/// Deletes a cloud gateway (not while it is in a pool: EM fails the task). Answers with a task.
#[utoipa::path(delete, path = "/v1/cloud-gateways/{id}", tag = "cloud gateways",
    operation_id = "deleteCloudGateway",
    params(("id" = Uuid, Path, description = "The gateway's guid (its UID is accepted too)")),
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        Problems::<404, 502>,
    ))]
pub async fn delete(
    key: Writer,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<crate::domain::CloudGateway>(&id, "cloud gateway")?;
    submit_without_body(&req, &state, &key, Command::DeleteCloudGateway(id)).await
}
