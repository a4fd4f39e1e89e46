//! Cloud gateways: the validated create and change commands.

use serde::{Deserialize, Serialize};

use super::{BackupServerUid, Description, HostName, Port, string_enum};

string_enum!(
    /// How tenants reach a gateway: straight to it, or through a NAT device.
    NetworkType {
        Direct = "direct",
        Nat = "nat",
    }
);

/// How tenants reach the gateway. NAT needs the NAT device's external address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "network_type", rename_all = "snake_case")]
pub enum Network {
    Direct,
    Nat { external_ip: HostName },
}

impl Network {
    pub fn kind(&self) -> NetworkType {
        match self {
            Network::Direct => NetworkType::Direct,
            Network::Nat { .. } => NetworkType::Nat,
        }
    }
}

/// `POST /v1/cloud-gateways`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCloudGateway {
    pub backup_server: BackupServerUid,
    pub host: HostName,
    pub description: Option<Description>,
    pub network: Network,
    pub external_port: Port,
    pub internal_port: Port,
}

/// `PATCH /v1/cloud-gateways/{id}`, validated: `None` keeps what EM has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudGatewayChange {
    pub enabled: Option<bool>,
    pub description: Option<Description>,
    pub network: Option<Network>,
    pub external_port: Option<Port>,
    pub internal_port: Option<Port>,
}
