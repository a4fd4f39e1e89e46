//! What a write asks of EM, as a value: recorded with its task (so that a task EM lost track of
//! can be judged against EM's objects), and turned into the one EM request that carries it out.
//!
//! A new kind of write is one more variant here, one more arm in [`Command::prepare`], and one
//! more arm in `reconcile::judge`.

use uuid::Uuid;

use serde::{Deserialize, Serialize};

use crate::domain::{
    CloudGatewayChange, CloudGatewayPoolChange, CloudTenantChange, Edit, Network,
    NewBackupResource, NewCloudGateway, NewCloudGatewayPool, NewCloudTenant,
    NewTenantBackupResource, Operation, TenantBackupResource,
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
    CreateCloudTenant(NewCloudTenant),
    UpdateCloudTenant(Uuid, CloudTenantChange),
    DeleteCloudTenant(Uuid, TenantDeletion),
    CreateCloudTenantBackupResource(NewTenantBackupResource),
    DeleteCloudTenantBackupResource(TenantBackupResource),
}

/// How a tenant goes: with its backups, or leaving them on the repositories (EM's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeletion {
    pub delete_backups: bool,
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
            Command::CreateCloudTenant(_) => Operation::CreateCloudTenant,
            Command::UpdateCloudTenant(..) => Operation::UpdateCloudTenant,
            Command::DeleteCloudTenant(..) => Operation::DeleteCloudTenant,
            Command::CreateCloudTenantBackupResource(_) => {
                Operation::CreateCloudTenantBackupResource
            }
            Command::DeleteCloudTenantBackupResource(_) => {
                Operation::DeleteCloudTenantBackupResource
            }
        }
    }

    /// The EM object an update or delete is about (a create learns its object from EM).
    pub fn target(&self) -> Option<Uuid> {
        match self {
            Command::CreateCloudGateway(_)
            | Command::CreateCloudGatewayPool(_)
            | Command::CreateCloudTenant(_)
            | Command::CreateCloudTenantBackupResource(_) => None,
            Command::UpdateCloudGateway(id, _)
            | Command::DeleteCloudGateway(id)
            | Command::UpdateCloudGatewayPool(id, _)
            | Command::DeleteCloudGatewayPool(id)
            | Command::UpdateCloudTenant(id, _)
            | Command::DeleteCloudTenant(id, _) => Some(*id),
            Command::DeleteCloudTenantBackupResource(r) => Some(r.resource),
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
            // Without the password: it is never serialised.
            Command::CreateCloudTenant(c) => serde_json::to_string(c),
            Command::UpdateCloudTenant(_, c) => serde_json::to_string(c),
            Command::DeleteCloudTenant(_, d) => serde_json::to_string(d),
            Command::CreateCloudTenantBackupResource(c) => serde_json::to_string(c),
            Command::DeleteCloudTenantBackupResource(r) => serde_json::to_string(r),
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
        let given = target;
        let target = || given.ok_or(Unreadable);
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
            Operation::CreateCloudTenant => Command::CreateCloudTenant(parse(request)?),
            Operation::UpdateCloudTenant => Command::UpdateCloudTenant(target()?, parse(request)?),
            Operation::DeleteCloudTenant => Command::DeleteCloudTenant(target()?, parse(request)?),
            Operation::CreateCloudTenantBackupResource => {
                Command::CreateCloudTenantBackupResource(parse(request)?)
            }
            Operation::DeleteCloudTenantBackupResource => {
                let r: TenantBackupResource = parse(request)?;
                if Some(r.resource) != given {
                    return Err(Unreadable);
                }
                Command::DeleteCloudTenantBackupResource(r)
            }
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
            Command::CreateCloudTenant(c) => EmRequest::CreateCloudTenant(tenant_spec(c)),
            Command::UpdateCloudTenant(id, change) => {
                let Some(current) = em.cloud_tenant(*id).await? else {
                    return Ok(None);
                };
                EmRequest::EditCloudTenant(*id, tenant_edit(&current, change))
            }
            Command::DeleteCloudTenant(id, d) => EmRequest::DeleteCloudTenant(*id, *d),
            Command::CreateCloudTenantBackupResource(c) => {
                EmRequest::CreateCloudTenantResource(c.tenant, resource_spec(&c.resource))
            }
            Command::DeleteCloudTenantBackupResource(r) => {
                EmRequest::DeleteCloudTenantResource(r.tenant, r.resource)
            }
        }))
    }

    /// What the caller is told when the object to change does not exist.
    pub fn missing(&self) -> String {
        match self {
            Command::CreateCloudTenantBackupResource(c) => {
                return format!("no cloud tenant {}", c.tenant);
            }
            Command::DeleteCloudTenantBackupResource(r) => {
                return format!(
                    "no storage quota {} on cloud tenant {}",
                    r.resource, r.tenant
                );
            }
            _ => {}
        }
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
    CreateCloudTenant(xml::CreateCloudTenantSpec),
    EditCloudTenant(Uuid, xml::CloudTenantEdit),
    DeleteCloudTenant(Uuid, TenantDeletion),
    CreateCloudTenantResource(Uuid, xml::CreateCloudTenantResourceSpec),
    DeleteCloudTenantResource(Uuid, Uuid),
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
            EmRequest::CreateCloudTenant(spec) => em.create_cloud_tenant(spec).await,
            EmRequest::EditCloudTenant(id, edit) => em.edit_cloud_tenant(*id, edit).await,
            EmRequest::DeleteCloudTenant(id, d) => {
                em.delete_cloud_tenant(*id, d.delete_backups).await
            }
            EmRequest::CreateCloudTenantResource(tenant, spec) => {
                em.create_cloud_tenant_resource(*tenant, spec).await
            }
            EmRequest::DeleteCloudTenantResource(tenant, resource) => {
                em.delete_cloud_tenant_resource(*tenant, *resource).await
            }
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

pub fn resource_spec(r: &NewBackupResource) -> xml::CreateCloudTenantResourceSpec {
    xml::CreateCloudTenantResourceSpec {
        name: r.name.as_str().to_string(),
        repository_uid: r.repository.urn(),
        quota_mb: r.quota_mb.get(),
        wan_accelerator_uid: r.wan_accelerator.map(|w| w.urn()),
    }
}

pub fn tenant_spec(c: &NewCloudTenant) -> xml::CreateCloudTenantSpec {
    xml::CreateCloudTenantSpec {
        xmlns: Namespace,
        name: c.name.as_str().to_string(),
        description: c.description.as_ref().map(|d| d.as_str().to_string()),
        // A request always carries one (the API requires it); a command read back from its
        // record has none and is never sent. Were it sent empty, EM would refuse it.
        password: c
            .password
            .as_ref()
            .map(|p| p.secret().clone())
            .unwrap_or_default(),
        enabled: Some(c.enabled),
        lease_expiration_date: c.lease_expires_at,
        resources: xml::BackupResources {
            items: c.backup_resources.iter().map(resource_spec).collect(),
        },
        throttling_enabled: Some(c.throttling.is_some()),
        throttling_speed_limit: c.throttling.map(|t| t.speed_limit.get()),
        throttling_speed_unit: c.throttling.map(|t| speed_unit(t.unit)),
        public_ip_count: None,
        backup_server_uid: c.backup_server.urn(),
        max_concurrent_tasks: c.max_concurrent_tasks.map(|n| n.get()),
        backup_protection_enabled: Some(c.backup_protection_days.is_some()),
        backup_protection_period: c.backup_protection_days.map(|d| d.get()),
        tenant_type: xml::CloudTenantType::Standalone,
        cloud_gateway_pools: xml::CloudGatewayPoolUids {
            uids: c.cloud_gateway_pools.iter().map(|p| p.urn()).collect(),
        },
        failover_to_others_gateways_if_fail: c.failover_to_other_gateways,
    }
}

fn speed_unit(unit: crate::domain::SpeedUnit) -> xml::ThrottlingSpeedUnit {
    match unit {
        crate::domain::SpeedUnit::Mbps => xml::ThrottlingSpeedUnit::Mbps,
        crate::domain::SpeedUnit::KBps => xml::ThrottlingSpeedUnit::KBps,
        crate::domain::SpeedUnit::MBps => xml::ThrottlingSpeedUnit::MBps,
    }
}

/// The entity EM's PUT wants: what EM has, with the change applied. Quotas not resized are left
/// out (EM keeps them); a resize of a quota the tenant does not have is left out too (the
/// submit refused it before: see `tasks::precheck`).
pub fn tenant_edit(current: &xml::CloudTenant, change: &CloudTenantChange) -> xml::CloudTenantEdit {
    let username = current
        .username()
        .map(str::to_string)
        .unwrap_or_else(|| current.name.clone());
    let mut edit = xml::CloudTenantEdit::new(username);
    edit.password = change.password.as_ref().map(|p| p.secret().clone());
    edit.description = change
        .description
        .as_ref()
        .map(|d| d.as_str().to_string())
        .or_else(|| current.description.clone());
    edit.enabled = change.enabled.or(current.enabled);
    edit.lease_options = match change.lease_expires_at {
        Edit::Keep => current.lease_options,
        Edit::Clear => Some(xml::LeaseOptions::none()),
        Edit::Set(at) => Some(xml::LeaseOptions::until(at)),
    };
    // A speed unit EM added later cannot be written back: then it is left as EM has it.
    let current_unit = current
        .throttling_speed_unit
        .filter(|u| *u != xml::ThrottlingSpeedUnit::Unknown);
    (
        edit.throttling_enabled,
        edit.throttling_speed_limit,
        edit.throttling_speed_unit,
    ) = match change.throttling {
        Edit::Keep => (
            current.throttling_enabled,
            current.throttling_speed_limit,
            current_unit,
        ),
        Edit::Clear => (Some(false), current.throttling_speed_limit, current_unit),
        Edit::Set(t) => (
            Some(true),
            Some(t.speed_limit.get()),
            Some(speed_unit(t.unit)),
        ),
    };
    edit.max_concurrent_tasks = change
        .max_concurrent_tasks
        .map(|n| n.get())
        .or(current.max_concurrent_tasks);
    (
        edit.backup_protection_enabled,
        edit.backup_protection_period,
    ) = match change.backup_protection_days {
        Edit::Keep => (
            current.backup_protection_enabled,
            current.backup_protection_period,
        ),
        Edit::Clear => (Some(false), current.backup_protection_period),
        Edit::Set(days) => (Some(true), Some(days.get())),
    };
    edit.cloud_gateway_pools =
        change
            .cloud_gateway_pools
            .as_ref()
            .map(|pools| xml::CloudGatewayPoolUids {
                uids: pools.iter().map(|p| p.urn()).collect(),
            });
    edit.failover_to_others_gateways_if_fail = change
        .failover_to_other_gateways
        .or(current.failover_to_others_gateways_if_fail);
    edit.resources = xml::CloudTenantResourceEdits {
        items: change
            .backup_resources
            .iter()
            .filter_map(|resize| {
                let quota = current.resources.items.iter().find(|r| r.id == resize.id)?;
                let mut edit = xml::CloudTenantResourceEdit::from(quota);
                edit.repository_quota.quota = resize.quota_mb.get();
                Some(edit)
            })
            .collect(),
    };
    edit
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

    fn tenant() -> NewCloudTenant {
        NewCloudTenant {
            backup_server: BackupServerUid::parse("29e5d158-1f58-44bc-bbaa-2752d787a91d").unwrap(),
            name: crate::domain::TenantName::parse("ABC Ltd").unwrap(),
            description: None,
            password: None,
            enabled: true,
            lease_expires_at: None,
            backup_resources: Vec::new(),
            max_concurrent_tasks: None,
            throttling: None,
            backup_protection_days: None,
            cloud_gateway_pools: Vec::new(),
            failover_to_other_gateways: Some(true),
        }
    }

    #[test]
    fn a_tenant_edit_is_what_em_has_with_the_change_and_a_password_only_when_set() {
        let current: xml::CloudTenant = xml::from_xml(
            r#"<CloudTenant Name="abc" UID="urn:veeam:CloudTenant:3f2a1c10-0000-4000-8000-00000000e901" xmlns="http://www.veeam.com/ent/v1.0">
  <Password/><Description>before</Description><Enabled>true</Enabled><LeaseOptions Enabled="true" ExpirationDate="2031-01-01T00:00:00Z"/>
  <Resources><CloudTenantResource Id="3f2a1c10-0000-4000-8000-00000000e911"><RepositoryQuota><DisplayName>C</DisplayName><RepositoryUid>urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101</RepositoryUid><Quota>2048</Quota><UsedQuota>10</UsedQuota></RepositoryQuota></CloudTenantResource></Resources>
  <ThrottlingEnabled>true</ThrottlingEnabled><ThrottlingSpeedLimit>5</ThrottlingSpeedLimit><ThrottlingSpeedUnit>KBps</ThrottlingSpeedUnit>
  <MaxConcurrentTasks>3</MaxConcurrentTasks><BackupProtectionEnabled>true</BackupProtectionEnabled><BackupProtectionPeriod>9</BackupProtectionPeriod>
  <TenantType><StandaloneTenant><TenantCredentials><Username>abc</Username></TenantCredentials></StandaloneTenant></TenantType></CloudTenant>"#,
        )
        .unwrap();
        let quota = Uuid::parse_str("3f2a1c10-0000-4000-8000-00000000e911").unwrap();
        let change = CloudTenantChange {
            enabled: Some(false),
            lease_expires_at: Edit::Clear,
            backup_protection_days: Edit::Clear,
            backup_resources: vec![
                crate::domain::QuotaResize {
                    id: quota,
                    quota_mb: crate::domain::QuotaMb::parse(4096).unwrap(),
                },
                crate::domain::QuotaResize {
                    id: Uuid::now_v7(),
                    quota_mb: crate::domain::QuotaMb::parse(4096).unwrap(),
                },
            ],
            ..Default::default()
        };
        let edit = tenant_edit(&current, &change);
        assert_eq!(edit.username, "abc");
        assert!(edit.password.is_none(), "no password unless it changes");
        assert_eq!(edit.description.as_deref(), Some("before"), "kept");
        assert_eq!(edit.enabled, Some(false));
        assert_eq!(edit.lease_options, Some(xml::LeaseOptions::none()));
        assert_eq!(
            (
                edit.throttling_enabled,
                edit.throttling_speed_limit,
                edit.throttling_speed_unit
            ),
            (Some(true), Some(5), Some(xml::ThrottlingSpeedUnit::KBps)),
            "kept"
        );
        assert_eq!(edit.max_concurrent_tasks, Some(3));
        assert_eq!(edit.backup_protection_enabled, Some(false));
        assert_eq!(edit.cloud_gateway_pools, None, "pools not named: kept");
        assert_eq!(edit.resources.items.len(), 1, "only the tenant's own quota");
        assert_eq!(edit.resources.items[0].repository_quota.quota, 4096);
        let with_password = CloudTenantChange {
            password: Some(crate::domain::TenantPassword::parse("n3w").unwrap()),
            password_changed: true,
            cloud_gateway_pools: Some(Vec::new()),
            ..Default::default()
        };
        let edit = tenant_edit(&current, &with_password);
        let xml = xml::to_xml(&edit).unwrap();
        assert!(xml.contains("<Password>n3w</Password>"), "{xml}");
        assert!(
            xml.contains("<CloudGatewayPools/>"),
            "an empty list removes the pools: {xml}"
        );
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
            Command::CreateCloudTenant(tenant()),
            Command::UpdateCloudTenant(
                id,
                CloudTenantChange {
                    enabled: Some(false),
                    password_changed: true,
                    lease_expires_at: Edit::Clear,
                    ..Default::default()
                },
            ),
            Command::DeleteCloudTenant(
                id,
                TenantDeletion {
                    delete_backups: true,
                },
            ),
            Command::DeleteCloudTenantBackupResource(TenantBackupResource {
                tenant: Uuid::now_v7(),
                resource: id,
            }),
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
