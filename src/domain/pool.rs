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

/// Parses a list of UIDs, reporting each bad item by its index. The list is a set: an object
/// listed twice (as a UID and as a bare guid, say) counts once.
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
            Ok(uid) if out.iter().any(|u| u.id() == uid.id()) => {}
            Ok(uid) => out.push(uid),
            Err(e) => errors.add(format!("{field}[{i}]"), e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CloudGateway;

    #[test]
    fn a_uid_list_is_a_set_and_names_each_bad_item() {
        let g = "3e4e6d17-ee2a-430f-807c-8d92af2a5551";
        let mut errors = FieldErrors::new();
        let items = [format!("urn:veeam:CloudGateway:{g}"), g.to_string()];
        let list = parse_uid_list::<CloudGateway>("gateways", &items, 1, &mut errors);
        assert_eq!(list.len(), 1, "the same gateway twice counts once");
        assert!(errors.is_empty());
        let items = [g.to_string(), "x".to_string()];
        parse_uid_list::<CloudGateway>("gateways", &items, 1, &mut errors);
        assert_eq!(errors.into_vec()[0].field, "gateways[1]");
    }
}
