//! Cloud gateway pools: the validated create and change commands.

use serde::{Deserialize, Serialize};

use super::{BackupServerUid, CloudGatewayUid, CloudTenantUid, Description, FieldErrors, PoolName};

/// `POST /v1/cloud-gateway-pools`, validated: at least one gateway, no duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCloudGatewayPool {
    pub backup_server: BackupServerUid,
    pub name: PoolName,
    pub description: Option<Description>,
    pub gateways: Vec<CloudGatewayUid>,
    pub tenants: Vec<CloudTenantUid>,
}

/// `PATCH /v1/cloud-gateway-pools/{id}`, validated: `None` keeps what EM has; lists replace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudGatewayPoolChange {
    pub name: Option<PoolName>,
    pub description: Option<Description>,
    pub gateways: Option<Vec<CloudGatewayUid>>,
    pub tenants: Option<Vec<CloudTenantUid>>,
}

/// Parses a list of UIDs, reporting each bad item and each duplicate by its index.
pub fn parse_uid_list<K: super::UidKind>(
    field: &str,
    items: &[String],
    min: usize,
    errors: &mut FieldErrors,
) -> Vec<super::Uid<K>> {
    if items.len() < min {
        errors.add(field, format!("must list at least {min}"));
    }
    let mut out: Vec<super::Uid<K>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match super::Uid::<K>::parse(item) {
            Ok(uid) if out.iter().any(|u| u.id() == uid.id()) => {
                errors.add(format!("{field}[{i}]"), "is listed twice")
            }
            Ok(uid) => out.push(uid),
            Err(e) => errors.add(format!("{field}[{i}]"), e),
        }
    }
    out
}
