//! `/v1/cloud-gateway-pools`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::gateways::required;
use super::problem::{ApiError, Problem};
use super::tasks::accepted;
use super::{AppState, caller, request};
use crate::domain::{
    BackupServerUid, CloudGateway, CloudTenant, Description, FieldErrors, Metadata,
    NewCloudGatewayPool, PoolName, Scope, TaskView, parse_uid_list,
};
use crate::operations::Requester;

/// Creates a cloud gateway pool (EM's `CreateCloudGatewayPoolSpec`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "backup_server_uid": "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d",
    "name": "GatewayPool 1", "description": "EU tenants",
    "cloud_gateway_uids": ["urn:veeam:CloudGateway:3e4e6d17-ee2a-430f-807c-8d92af2a5551"],
    "cloud_tenant_uids": ["urn:veeam:CloudTenant:5cf540af-512a-5ba8-9f12-77fba51207e0"],
    "metadata": {}}))]
pub struct CreateCloudGatewayPoolRequest {
    #[schema(required = true)]
    pub backup_server_uid: Option<String>,
    #[schema(required = true)]
    pub name: Option<String>,
    pub description: Option<String>,
    /// At least one; a gateway can be in only one pool.
    #[schema(required = true)]
    pub cloud_gateway_uids: Option<Vec<String>>,
    /// Tenants the pool is assigned to (may be empty).
    pub cloud_tenant_uids: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

impl CreateCloudGatewayPoolRequest {
    pub fn parse(self) -> Result<(NewCloudGatewayPool, Metadata), ApiError> {
        let mut e = FieldErrors::new();
        let backup_server = required(&mut e, "backup_server_uid", &self.backup_server_uid)
            .and_then(|v| e.check("backup_server_uid", BackupServerUid::parse(v)));
        let name =
            required(&mut e, "name", &self.name).and_then(|v| e.check("name", PoolName::parse(v)));
        let description = match &self.description {
            Some(d) => e.check("description", Description::parse(d)).map(Some),
            None => Some(None),
        };
        let gateways = match &self.cloud_gateway_uids {
            Some(list) => parse_uid_list::<CloudGateway>("cloud_gateway_uids", list, 1, &mut e),
            None => {
                e.add("cloud_gateway_uids", "is required");
                Vec::new()
            }
        };
        let tenants = parse_uid_list::<CloudTenant>(
            "cloud_tenant_uids",
            self.cloud_tenant_uids.as_deref().unwrap_or_default(),
            0,
            &mut e,
        );
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        match (backup_server, name, description) {
            (Some(backup_server), Some(name), Some(description)) if e.is_empty() => Ok((
                NewCloudGatewayPool {
                    backup_server,
                    name,
                    description,
                    gateways,
                    tenants,
                },
                metadata,
            )),
            _ => Err(ApiError::Invalid(e.into_vec())),
        }
    }
}

/// Creates a cloud gateway pool from existing gateways. Answers at once with a task.
#[utoipa::path(post, path = "/v1/cloud-gateway-pools", tag = "cloud gateway pools",
    request_body = CreateCloudGatewayPoolRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = caller(&req, &state, Scope::Write).await?;
    let body: CreateCloudGatewayPoolRequest = request::json(&req, payload).await?;
    let (command, metadata) = body.parse()?;
    let by = Requester {
        api_key_id: Some(key.id),
        metadata,
    };
    let task = state
        .operations
        .create_cloud_gateway_pool(&command, by)
        .await?;
    Ok(accepted(&task))
}
