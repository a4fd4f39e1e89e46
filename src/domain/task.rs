//! The task: what a caller follows after a write was accepted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::string_enum;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

string_enum!(
    /// What a task does on EM.
    Operation {
        CreateCloudGateway = "create_cloud_gateway",
        UpdateCloudGateway = "update_cloud_gateway",
        DeleteCloudGateway = "delete_cloud_gateway",
        CreateCloudGatewayPool = "create_cloud_gateway_pool",
        UpdateCloudGatewayPool = "update_cloud_gateway_pool",
        DeleteCloudGatewayPool = "delete_cloud_gateway_pool",
        CreateCloudTenant = "create_cloud_tenant",
        UpdateCloudTenant = "update_cloud_tenant",
        DeleteCloudTenant = "delete_cloud_tenant",
        CreateCloudTenantBackupResource = "create_cloud_tenant_backup_resource",
        DeleteCloudTenantBackupResource = "delete_cloud_tenant_backup_resource",
    }
);

string_enum!(
    /// `running` until EM settles it; then `succeeded` or `failed`, for good.
    TaskState {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

string_enum!(
    /// The kind of EM object a task is about.
    ResourceType {
        CloudGateway = "cloud_gateway",
        CloudGatewayPool = "cloud_gateway_pool",
        CloudTenant = "cloud_tenant",
        /// A tenant's storage quota on a cloud repository.
        CloudTenantBackupResource = "cloud_tenant_backup_resource",
    }
);

impl Operation {
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Operation::CreateCloudGateway
            | Operation::UpdateCloudGateway
            | Operation::DeleteCloudGateway => ResourceType::CloudGateway,
            Operation::CreateCloudGatewayPool
            | Operation::UpdateCloudGatewayPool
            | Operation::DeleteCloudGatewayPool => ResourceType::CloudGatewayPool,
            Operation::CreateCloudTenant
            | Operation::UpdateCloudTenant
            | Operation::DeleteCloudTenant => ResourceType::CloudTenant,
            Operation::CreateCloudTenantBackupResource
            | Operation::DeleteCloudTenantBackupResource => ResourceType::CloudTenantBackupResource,
        }
    }
}

impl ResourceType {
    /// EM's type name in UIDs and links. (A storage quota has no UID of its own in EM, only
    /// an id; its `uid` is written in the same form for uniformity.)
    pub fn em_name(&self) -> &'static str {
        match self {
            ResourceType::CloudGateway => "CloudGateway",
            ResourceType::CloudGatewayPool => "CloudGatewayPool",
            ResourceType::CloudTenant => "CloudTenant",
            ResourceType::CloudTenantBackupResource => "CloudTenantResource",
        }
    }
}

/// The EM object a task created, changed or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub type_: ResourceType,
    pub id: Uuid,
}

impl Resource {
    pub fn uid(&self) -> String {
        format!("urn:veeam:{}:{}", self.type_.em_name(), self.id)
    }
}

/// A write accepted by the gateway, followed until Enterprise Manager settles it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5c4-8f2e-7cc1-9d7e-3b1f3c2a9e10", "operation": "create_cloud_gateway",
    "state": "running", "em_task_id": "task-7", "message": null, "resource": null,
    "metadata": {"order": "42"}, "owner": "default", "warnings": [], "created_at": "2026-11-24T10:00:00.000Z",
    "updated_at": "2026-11-24T10:00:00.000Z", "finished_at": null}))]
pub struct TaskView {
    pub id: Uuid,
    pub operation: Operation,
    pub state: TaskState,
    /// EM's own task id (`task-N`), once EM accepted the request.
    #[schema(required = true)]
    pub em_task_id: Option<String>,
    /// Why it failed (EM's message), or how it was settled when EM lost track of it.
    #[schema(required = true)]
    pub message: Option<String>,
    /// The EM object created, changed or deleted; null until known.
    #[schema(required = true)]
    pub resource: Option<ResourceView>,
    /// The caller's own data, as sent.
    #[schema(value_type = super::Metadata)]
    pub metadata: BTreeMap<String, String>,
    /// The owner of the API key that asked for it.
    pub owner: super::Owner,
    /// What the gateway noticed before sending the request on (a storage quota larger than the
    /// repository's free space, say): EM went ahead regardless.
    pub warnings: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it settled; null while running.
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceView {
    #[serde(rename = "type")]
    pub type_: ResourceType,
    /// The bare guid (the id in `/v1/cloud-gateways/{id}`).
    pub id: Uuid,
    /// EM's UID.
    pub uid: String,
}
