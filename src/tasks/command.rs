//! What a write asks of EM, as a value: recorded with its task (so that a task EM lost track of
//! can be judged against EM's objects), and turned into the one EM request that carries it out.
//!
//! A new kind of write is one more variant here, one more arm in [`Command::prepare`], and one
//! more arm in `reconcile::judge`.

use uuid::Uuid;

use crate::domain::{
    CloudGatewayChange, CloudGatewayPoolChange, Network, NewCloudGateway, NewCloudGatewayPool,
    Operation,
};
use crate::em::xml::{self, Namespace, NetworkMode};
use crate::em::{EmClient, EmError, Submitted};

/// A validated write.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    CreateCloudGateway(NewCloudGateway),
    UpdateCloudGateway(Uuid, CloudGatewayChange),
    DeleteCloudGateway(Uuid),
    CreateCloudGatewayPool(NewCloudGatewayPool),
    UpdateCloudGatewayPool(Uuid, CloudGatewayPoolChange),
    DeleteCloudGatewayPool(Uuid),
}

/// A recorded request that no longer parses (a row from an incompatible version, or damaged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored request is unreadable")]
pub struct Unreadable;

impl Command {
    pub fn operation(&self) -> Operation {
        match self {
            Command::CreateCloudGateway(_) => Operation::CreateCloudGateway,
            Command::UpdateCloudGateway(..) => Operation::UpdateCloudGateway,
            Command::DeleteCloudGateway(_) => Operation::DeleteCloudGateway,
            Command::CreateCloudGatewayPool(_) => Operation::CreateCloudGatewayPool,
            Command::UpdateCloudGatewayPool(..) => Operation::UpdateCloudGatewayPool,
            Command::DeleteCloudGatewayPool(_) => Operation::DeleteCloudGatewayPool,
        }
    }

    /// The EM object an update or delete is about (a create learns its object from EM).
    pub fn target(&self) -> Option<Uuid> {
        match self {
            Command::CreateCloudGateway(_) | Command::CreateCloudGatewayPool(_) => None,
            Command::UpdateCloudGateway(id, _)
            | Command::DeleteCloudGateway(id)
            | Command::UpdateCloudGatewayPool(id, _)
            | Command::DeleteCloudGatewayPool(id) => Some(*id),
        }
    }

    /// The request as recorded with the task (JSON text). The operation and the target are
    /// recorded beside it, so this is only the variant's own data — the format tasks written by
    /// earlier versions already have.
    pub fn record(&self) -> String {
        let json = match self {
            Command::CreateCloudGateway(c) => serde_json::to_string(c),
            Command::UpdateCloudGateway(_, c) => serde_json::to_string(c),
            Command::CreateCloudGatewayPool(c) => serde_json::to_string(c),
            Command::UpdateCloudGatewayPool(_, c) => serde_json::to_string(c),
            Command::DeleteCloudGateway(_) | Command::DeleteCloudGatewayPool(_) => {
                Ok("null".into())
            }
        };
        json.unwrap_or_else(|_| "null".into())
    }

    /// The command a task recorded.
    pub fn from_record(
        operation: Operation,
        target: Option<Uuid>,
        request: &str,
    ) -> Result<Self, Unreadable> {
        fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Unreadable> {
            serde_json::from_str(text).map_err(|_| Unreadable)
        }
        let target = || target.ok_or(Unreadable);
        Ok(match operation {
            Operation::CreateCloudGateway => Command::CreateCloudGateway(parse(request)?),
            Operation::UpdateCloudGateway => {
                Command::UpdateCloudGateway(target()?, parse(request)?)
            }
            Operation::DeleteCloudGateway => Command::DeleteCloudGateway(target()?),
            Operation::CreateCloudGatewayPool => Command::CreateCloudGatewayPool(parse(request)?),
            Operation::UpdateCloudGatewayPool => {
                Command::UpdateCloudGatewayPool(target()?, parse(request)?)
            }
            Operation::DeleteCloudGatewayPool => Command::DeleteCloudGatewayPool(target()?),
        })
    }

    /// The EM request this command becomes. EM's PUT takes the whole entity, so a change reads
    /// it first and applies the change to what EM has (`Ok(None)`: the object does not exist).
    pub async fn prepare(&self, em: &EmClient) -> Result<Option<EmRequest>, EmError> {
        Ok(Some(match self {
            Command::CreateCloudGateway(c) => EmRequest::CreateCloudGateway(gateway_spec(c)),
            Command::UpdateCloudGateway(id, change) => {
                let Some(current) = em.cloud_gateway(*id).await? else {
                    return Ok(None);
                };
                EmRequest::EditCloudGateway(*id, gateway_edit(&current, change))
            }
            Command::DeleteCloudGateway(id) => EmRequest::DeleteCloudGateway(*id),
            Command::CreateCloudGatewayPool(c) => EmRequest::CreateCloudGatewayPool(pool_spec(c)),
            Command::UpdateCloudGatewayPool(id, change) => {
                let Some(current) = em.cloud_gateway_pool(*id).await? else {
                    return Ok(None);
                };
                EmRequest::EditCloudGatewayPool(*id, pool_edit(&current, change))
            }
            Command::DeleteCloudGatewayPool(id) => EmRequest::DeleteCloudGatewayPool(*id),
        }))
    }

    /// What the caller is told when the object to change does not exist.
    pub fn missing(&self) -> String {
        let kind = self.operation().resource_type().as_str().replace('_', " ");
        match self.target() {
            Some(id) => format!("no {kind} {id}"),
            None => format!("no {kind}"),
        }
    }
}

/// One EM request, ready to send.
#[derive(Debug, Clone)]
pub enum EmRequest {
    CreateCloudGateway(xml::CreateCloudGatewaySpec),
    EditCloudGateway(Uuid, xml::CloudGatewayEdit),
    DeleteCloudGateway(Uuid),
    CreateCloudGatewayPool(xml::CreateCloudGatewayPoolSpec),
    EditCloudGatewayPool(Uuid, xml::CloudGatewayPoolEdit),
    DeleteCloudGatewayPool(Uuid),
}

impl EmRequest {
    pub async fn send(&self, em: &EmClient) -> Result<Submitted, EmError> {
        match self {
            EmRequest::CreateCloudGateway(spec) => em.create_cloud_gateway(spec).await,
            EmRequest::EditCloudGateway(id, edit) => em.edit_cloud_gateway(*id, edit).await,
            EmRequest::DeleteCloudGateway(id) => em.delete_cloud_gateway(*id).await,
            EmRequest::CreateCloudGatewayPool(spec) => em.create_cloud_gateway_pool(spec).await,
            EmRequest::EditCloudGatewayPool(id, edit) => {
                em.edit_cloud_gateway_pool(*id, edit).await
            }
            EmRequest::DeleteCloudGatewayPool(id) => em.delete_cloud_gateway_pool(*id).await,
        }
    }
}

pub fn gateway_spec(c: &NewCloudGateway) -> xml::CreateCloudGatewaySpec {
    let (network_type, external_ip) = match &c.network {
        Network::Direct => (NetworkMode::Direct, None),
        Network::Nat { external_ip } => (NetworkMode::Nat, Some(external_ip.to_string())),
    };
    xml::CreateCloudGatewaySpec {
        xmlns: Namespace,
        server_host_name: c.host.to_string(),
        description: c.description.as_ref().map(|d| d.as_str().to_string()),
        external_ip,
        external_port: Some(c.external_port.get()),
        network_type,
        internal_port: Some(c.internal_port.get()),
        backup_server_uid: c.backup_server.urn(),
    }
}

pub fn pool_spec(c: &NewCloudGatewayPool) -> xml::CreateCloudGatewayPoolSpec {
    xml::CreateCloudGatewayPoolSpec {
        xmlns: Namespace,
        name: c.name.as_str().to_string(),
        description: c.description.as_ref().map(|d| d.as_str().to_string()),
        cloud_gateways: xml::CloudGatewayUids {
            uids: c.gateways.iter().map(|g| g.urn()).collect(),
        },
        cloud_tenants: (!c.tenants.is_empty()).then(|| xml::CloudTenantUids {
            uids: c.tenants.iter().map(|t| t.urn()).collect(),
        }),
        backup_server_uid: c.backup_server.urn(),
    }
}

/// The whole entity EM's PUT wants: what EM has, with the change applied.
pub fn gateway_edit(
    current: &xml::CloudGateway,
    change: &CloudGatewayChange,
) -> xml::CloudGatewayEdit {
    let (network_mode, external_ip) = match &change.network {
        Some(Network::Direct) => (NetworkMode::Direct, current.external_ip.clone()),
        Some(Network::Nat { external_ip }) => (NetworkMode::Nat, Some(external_ip.to_string())),
        None => (current.network_mode, current.external_ip.clone()),
    };
    xml::CloudGatewayEdit {
        xmlns: Namespace,
        enabled: change.enabled.or(current.enabled),
        network_mode,
        external_ip,
        external_port: change
            .external_port
            .map(|p| p.get())
            .or(current.external_port),
        internal_port: change
            .internal_port
            .map(|p| p.get())
            .or(current.internal_port),
        description: change
            .description
            .as_ref()
            .map(|d| d.as_str().to_string())
            .or_else(|| current.description.clone()),
    }
}

pub fn pool_edit(
    current: &xml::CloudGatewayPool,
    change: &CloudGatewayPoolChange,
) -> xml::CloudGatewayPoolEdit {
    xml::CloudGatewayPoolEdit {
        xmlns: Namespace,
        name: change
            .name
            .as_ref()
            .map(|n| n.as_str().to_string())
            .unwrap_or_else(|| current.name.clone()),
        description: change
            .description
            .as_ref()
            .map(|d| d.as_str().to_string())
            .or_else(|| current.description.clone()),
        cloud_gateways: match &change.gateways {
            Some(list) => xml::CloudGatewayUids {
                uids: list.iter().map(|g| g.urn()).collect(),
            },
            None => current.cloud_gateways.clone(),
        },
        cloud_tenants: match &change.tenants {
            Some(list) => xml::CloudTenantUids {
                uids: list.iter().map(|t| t.urn()).collect(),
            },
            None => current.cloud_tenants.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BackupServerUid, Description, HostName, Port};

    fn gateway() -> NewCloudGateway {
        NewCloudGateway {
            backup_server: BackupServerUid::parse("29e5d158-1f58-44bc-bbaa-2752d787a91d").unwrap(),
            host: HostName::parse("gw01.example.local").unwrap(),
            description: Some(Description::parse("Frankfurt").unwrap()),
            network: Network::Direct,
            external_port: Port::CLOUD_GATEWAY_DEFAULT,
            internal_port: Port::CLOUD_GATEWAY_DEFAULT,
        }
    }

    #[test]
    fn every_command_reads_back_from_its_record() {
        let id = Uuid::now_v7();
        let commands = [
            Command::CreateCloudGateway(gateway()),
            Command::UpdateCloudGateway(
                id,
                CloudGatewayChange {
                    enabled: Some(false),
                    ..Default::default()
                },
            ),
            Command::DeleteCloudGateway(id),
            Command::UpdateCloudGatewayPool(id, CloudGatewayPoolChange::default()),
            Command::DeleteCloudGatewayPool(id),
        ];
        for command in commands {
            let back =
                Command::from_record(command.operation(), command.target(), &command.record());
            assert_eq!(back, Ok(command));
        }
    }

    #[test]
    fn records_of_earlier_versions_still_read() {
        // As written before commands had a type of their own: the variant's data alone, and
        // `null` for a delete.
        let old = r#"{"backup_server":"urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d","host":"gw01.example.local","description":"Frankfurt","network":{"network_type":"direct"},"external_port":6180,"internal_port":6180}"#;
        assert_eq!(
            Command::from_record(Operation::CreateCloudGateway, None, old),
            Ok(Command::CreateCloudGateway(gateway()))
        );
        let id = Uuid::now_v7();
        assert_eq!(
            Command::from_record(Operation::DeleteCloudGatewayPool, Some(id), "null"),
            Ok(Command::DeleteCloudGatewayPool(id))
        );
        assert_eq!(
            Command::from_record(Operation::CreateCloudGateway, None, "{}"),
            Err(Unreadable)
        );
        assert_eq!(
            Command::from_record(Operation::DeleteCloudGateway, None, "null"),
            Err(Unreadable),
            "a delete names its object"
        );
    }
}
