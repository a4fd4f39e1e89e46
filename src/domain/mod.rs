//! Domain values. Each is built only by parsing, so once a value exists it is valid: handlers,
//! the store and the poller never check again.

mod fields;
mod gateway;
mod ids;
mod owner;
mod pool;
mod scope;
mod task;
mod tenant;
mod uid;
mod vocabulary;
mod webhook;

pub(crate) use vocabulary::string_enum;

pub use fields::{
    Description, FieldError, FieldErrors, HostName, Lines, Metadata, PoolName, Port, check_text,
    name_schema,
};
pub use gateway::{CloudGatewayChange, Network, NetworkType, NewCloudGateway};
pub use ids::{ApiKeyId, DeliveryId, EventId, ReplicaId, TaskId, WebhookId};
pub use owner::{Listing, Owner, Visibility};
pub use pool::parse_uid_list;
pub use pool::{CloudGatewayPoolChange, NewCloudGatewayPool};
pub use scope::Scope;
pub use task::{Operation, Resource, ResourceType, ResourceView, TaskState, TaskView};
pub use tenant::{
    CloudTenantChange, Count, Edit, NewBackupResource, NewCloudTenant, NewTenantBackupResource,
    QuotaMb, QuotaResize, ResourceName, SpeedUnit, TenantBackupResource, TenantName,
    TenantPassword, Throttling, lease_end,
};
pub use uid::{
    BackupServer, BackupServerUid, CloudGateway, CloudGatewayPool, CloudGatewayPoolUid,
    CloudGatewayUid, CloudTenant, CloudTenantUid, Repository, RepositoryUid, Uid, UidKind,
    WanAccelerator, WanAcceleratorUid,
};
pub use webhook::{DeliveryState, EventType, TaskEvent};
