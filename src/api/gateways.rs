//! `/v1/cloud-gateways`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::problem::{ApiError, Problem};
use super::tasks::accepted;
use super::{AppState, caller, request};
use crate::domain::{
    BackupServerUid, Description, FieldErrors, HostName, Metadata, Network, NewCloudGateway, Port,
    Scope, TaskView,
};
use crate::operations::Requester;

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
    #[schema(required = true)]
    pub backup_server_uid: Option<String>,
    /// DNS name or IP address of a managed server of that backup server.
    #[schema(required = true)]
    pub server_host_name: Option<String>,
    pub description: Option<String>,
    /// `direct` (default) or `nat`.
    #[schema(example = "direct")]
    pub network_type: Option<String>,
    /// The NAT device's external IP address or DNS name; required for `nat`.
    pub external_ip: Option<String>,
    /// Default 6180.
    pub external_port: Option<i64>,
    /// Default 6180.
    pub internal_port: Option<i64>,
    /// Your own data, echoed in the task and in webhooks.
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

pub(super) fn network(
    errors: &mut FieldErrors,
    network_type: Option<&str>,
    external_ip: Option<&str>,
) -> Option<Network> {
    match network_type.unwrap_or("direct") {
        "direct" => Some(Network::Direct),
        "nat" => match external_ip {
            None => {
                errors.add("external_ip", "is required when network_type is nat");
                None
            }
            Some(ip) => errors
                .check("external_ip", HostName::parse(ip))
                .map(|external_ip| Network::Nat { external_ip }),
        },
        _ => {
            errors.add("network_type", "must be direct or nat");
            None
        }
    }
}

impl CreateCloudGatewayRequest {
    pub fn parse(self) -> Result<(NewCloudGateway, Metadata), ApiError> {
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
    request_body = CreateCloudGatewayRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed JSON, unknown field or wrong type"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Invalid values, one entry per field"),
        (status = 502, body = Problem, content_type = "application/problem+json", description = "EM answered something the gateway cannot read"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "EM or the database is unavailable; see Retry-After"),
    ),
    security(("api_key" = [])))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = caller(&req, &state, Scope::Write).await?;
    let body: CreateCloudGatewayRequest = request::json(&req, payload).await?;
    let (command, metadata) = body.parse()?;
    let by = Requester {
        api_key_id: Some(key.id),
        metadata,
    };
    let task = state.operations.create_cloud_gateway(&command, by).await?;
    Ok(accepted(&task))
}
