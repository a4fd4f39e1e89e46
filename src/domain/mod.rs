//! Domain values. Each is built only by parsing, so once a value exists it is valid: handlers,
//! the store and the poller never check again.

mod fields;
mod gateway;
mod pool;
mod scope;
mod task;
mod uid;

pub use fields::{Description, FieldError, FieldErrors, HostName, Metadata, PoolName, Port};
pub use gateway::{CloudGatewayChange, Network, NewCloudGateway};
pub use pool::parse_uid_list;
pub use pool::{CloudGatewayPoolChange, NewCloudGatewayPool};
pub use scope::Scope;
pub use task::{Operation, Resource, ResourceType, ResourceView, TaskId, TaskState, TaskView};
pub use uid::{
    BackupServer, BackupServerUid, CloudGateway, CloudGatewayPool, CloudGatewayPoolUid,
    CloudGatewayUid, CloudTenant, CloudTenantUid, Uid, UidKind,
};
