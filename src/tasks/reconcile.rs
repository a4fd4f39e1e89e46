//! Reconcile: how a task ends, decided without I/O.
//!
//! Two ways. EM shows the task finished: [`from_em_task`] reads its result. EM lost track of the
//! task (its session expired, EM restarted, the gateway died, the submit's answer was lost):
//! [`judge`] decides from a snapshot of EM's objects whether the command took effect, and
//! [`settle_lost`] turns that into a settlement — or "not yet", until the grace period is over.
//! The poller fetches what [`looks`] asks for and applies the answer.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::command::Command;
use chrono::{DateTime, Utc};

use crate::domain::{
    CloudGatewayChange, CloudGatewayPoolChange, CloudTenantChange, Edit, Network, Operation,
    Resource, ResourceType, TaskState,
};
use crate::em::xml;
use crate::store::Settlement;

/// How EM's finished task ends ours: EM's failure with EM's message, or success with the
/// object (a create names its new object only in the task's `Related` link).
pub fn from_em_task(operation: Operation, target: Option<Uuid>, em_task: &xml::Task) -> Settlement {
    let result = em_task.result.as_ref();
    if !result.is_some_and(|r| r.success) {
        let message = result
            .and_then(|r| r.message.clone())
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| "Enterprise Manager reported a failure without a message".into());
        return Settlement {
            state: TaskState::Failed,
            message: Some(message),
            resource: None,
        };
    }
    let kind = operation.resource_type();
    let id = target.or_else(|| {
        em_task
            .links
            .find("Related", Some(kind.em_name()))
            .and_then(|l| Uuid::parse_str(xml::id_of(&l.href)).ok())
    });
    Settlement {
        state: TaskState::Succeeded,
        message: None,
        resource: id.map(|id| Resource { type_: kind, id }),
    }
}

/// Something of EM's to read before judging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Look {
    CloudGateways,
    CloudGatewayPools,
    CloudGateway(Uuid),
    CloudGatewayPool(Uuid),
    CloudTenants,
    /// A tenant's entity, with its storage quotas.
    CloudTenant(Uuid),
}

/// What judging `command` needs to see.
pub fn looks(command: &Command) -> Vec<Look> {
    match command {
        Command::CreateCloudGateway(_) => vec![Look::CloudGateways],
        Command::CreateCloudGatewayPool(_) => vec![Look::CloudGatewayPools],
        Command::UpdateCloudGateway(id, _) | Command::DeleteCloudGateway(id) => {
            vec![Look::CloudGateway(*id)]
        }
        Command::UpdateCloudGatewayPool(id, _) | Command::DeleteCloudGatewayPool(id) => {
            vec![Look::CloudGatewayPool(*id)]
        }
        Command::CreateCloudTenant(_) => vec![Look::CloudTenants],
        Command::UpdateCloudTenant(id, _) | Command::DeleteCloudTenant(id, _) => {
            vec![Look::CloudTenant(*id)]
        }
        Command::CreateCloudTenantBackupResource(c) => vec![Look::CloudTenant(c.tenant)],
        Command::DeleteCloudTenantBackupResource(r) => vec![Look::CloudTenant(r.tenant)],
    }
}

/// What was read of EM's objects (a look not yet read is simply absent).
#[derive(Debug, Clone, Default)]
pub struct EmObjects {
    pub gateways: Option<Vec<xml::CloudGateway>>,
    pub pools: Option<Vec<xml::CloudGatewayPool>>,
    /// By id; `None` inside: EM says it does not exist.
    pub gateway: HashMap<Uuid, Option<xml::CloudGateway>>,
    pub pool: HashMap<Uuid, Option<xml::CloudGatewayPool>>,
    pub tenants: Option<Vec<xml::CloudTenant>>,
    pub tenant: HashMap<Uuid, Option<xml::CloudTenant>>,
}

impl EmObjects {
    pub fn has(&self, look: Look) -> bool {
        match look {
            Look::CloudGateways => self.gateways.is_some(),
            Look::CloudGatewayPools => self.pools.is_some(),
            Look::CloudGateway(id) => self.gateway.contains_key(&id),
            Look::CloudGatewayPool(id) => self.pool.contains_key(&id),
            Look::CloudTenants => self.tenants.is_some(),
            Look::CloudTenant(id) => self.tenant.contains_key(&id),
        }
    }
}

/// What EM's objects say about a command EM lost track of.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// Decided: the task ends so, because of `what`.
    Done {
        state: TaskState,
        what: String,
        resource: Option<Resource>,
    },
    /// Not visible (yet): `what` is missing; give it until the grace period is over.
    NotYet(String),
}

fn done(state: TaskState, what: String, resource: Option<Resource>) -> Finding {
    Finding::Done {
        state,
        what,
        resource,
    }
}

fn guid(uid: &str) -> Option<Uuid> {
    Uuid::parse_str(xml::id_of(uid)).ok()
}

fn backup_server_of(links: &xml::Links) -> Option<Uuid> {
    links
        .find("Up", Some("BackupServerReference"))
        .and_then(|l| Uuid::parse_str(xml::id_of(&l.href)).ok())
}

/// Whether `command` took effect, judged from EM's objects.
pub fn judge(command: &Command, em: &EmObjects) -> Finding {
    let unread = || Finding::NotYet("EM's objects could not be read".into());
    match command {
        Command::CreateCloudGateway(c) => {
            let Some(gateways) = &em.gateways else {
                return unread();
            };
            let found = gateways.iter().find(|g| {
                g.name.eq_ignore_ascii_case(c.host.as_str())
                    && backup_server_of(&g.links) == Some(c.backup_server.id())
            });
            match found.and_then(|g| guid(&g.uid)) {
                Some(id) => done(
                    TaskState::Succeeded,
                    format!("cloud gateway {} exists", c.host),
                    Some(Resource {
                        type_: ResourceType::CloudGateway,
                        id,
                    }),
                ),
                None => Finding::NotYet(format!("no cloud gateway for {} appeared", c.host)),
            }
        }
        Command::CreateCloudGatewayPool(c) => {
            let Some(pools) = &em.pools else {
                return unread();
            };
            let found = pools.iter().find(|p| {
                p.name.eq_ignore_ascii_case(c.name.as_str())
                    && backup_server_of(&p.links) == Some(c.backup_server.id())
            });
            match found.and_then(|p| guid(&p.uid)) {
                Some(id) => done(
                    TaskState::Succeeded,
                    format!("cloud gateway pool {} exists", c.name.as_str()),
                    Some(Resource {
                        type_: ResourceType::CloudGatewayPool,
                        id,
                    }),
                ),
                None => Finding::NotYet(format!(
                    "no cloud gateway pool {} appeared",
                    c.name.as_str()
                )),
            }
        }
        Command::DeleteCloudGateway(id) => match em.gateway.get(id) {
            None => unread(),
            Some(gone) => deleted(ResourceType::CloudGateway, *id, gone.is_some()),
        },
        Command::DeleteCloudGatewayPool(id) => match em.pool.get(id) {
            None => unread(),
            Some(gone) => deleted(ResourceType::CloudGatewayPool, *id, gone.is_some()),
        },
        Command::UpdateCloudGateway(id, change) => match em.gateway.get(id) {
            None => unread(),
            Some(current) => changed(
                ResourceType::CloudGateway,
                *id,
                current.as_ref().map(|g| gateway_matches(g, change)),
            ),
        },
        Command::UpdateCloudGatewayPool(id, change) => match em.pool.get(id) {
            None => unread(),
            Some(current) => changed(
                ResourceType::CloudGatewayPool,
                *id,
                current.as_ref().map(|p| pool_matches(p, change)),
            ),
        },
        Command::CreateCloudTenant(c) => {
            let Some(tenants) = &em.tenants else {
                return unread();
            };
            let found = tenants.iter().find(|t| {
                c.name.same_as(&t.name) && backup_server_of(&t.links) == Some(c.backup_server.id())
            });
            match found.and_then(|t| guid(&t.uid)) {
                Some(id) => done(
                    TaskState::Succeeded,
                    format!("cloud tenant {} exists", c.name),
                    Some(Resource {
                        type_: ResourceType::CloudTenant,
                        id,
                    }),
                ),
                None => Finding::NotYet(format!("no cloud tenant {} appeared", c.name)),
            }
        }
        Command::UpdateCloudTenant(id, change) => match em.tenant.get(id) {
            None => unread(),
            Some(current) => {
                let finding = changed(
                    ResourceType::CloudTenant,
                    *id,
                    current.as_ref().map(|t| tenant_matches(t, change)),
                );
                // EM never shows a password: say that it was not checked.
                match finding {
                    Finding::Done {
                        state: TaskState::Succeeded,
                        what,
                        resource,
                    } if change.password_changed => done(
                        TaskState::Succeeded,
                        format!(
                            "{what}; its new password cannot be read back from EM and was not checked"
                        ),
                        resource,
                    ),
                    other => other,
                }
            }
        },
        Command::DeleteCloudTenant(id, _) => match em.tenant.get(id) {
            None => unread(),
            Some(gone) => deleted(ResourceType::CloudTenant, *id, gone.is_some()),
        },
        Command::CreateCloudTenantBackupResource(c) => match em.tenant.get(&c.tenant) {
            None => unread(),
            Some(None) => done(
                TaskState::Failed,
                format!("cloud tenant {} no longer exists", c.tenant),
                None,
            ),
            Some(Some(tenant)) => {
                let repository = c.resource.repository.id();
                let quota = tenant
                    .resources
                    .items
                    .iter()
                    .find(|r| guid(&r.repository_quota.repository_uid) == Some(repository));
                match quota {
                    Some(q) => done(
                        TaskState::Succeeded,
                        format!(
                            "cloud tenant {} has a storage quota on repository {repository}",
                            c.tenant
                        ),
                        Some(Resource {
                            type_: ResourceType::CloudTenantBackupResource,
                            id: q.id,
                        }),
                    ),
                    None => Finding::NotYet(format!(
                        "no storage quota on repository {repository} appeared for cloud tenant {}",
                        c.tenant
                    )),
                }
            }
        },
        Command::DeleteCloudTenantBackupResource(r) => match em.tenant.get(&r.tenant) {
            None => unread(),
            Some(tenant) => {
                let exists = tenant
                    .as_ref()
                    .is_some_and(|t| t.resources.items.iter().any(|q| q.id == r.resource));
                deleted(ResourceType::CloudTenantBackupResource, r.resource, exists)
            }
        },
    }
}

fn noun(kind: ResourceType) -> String {
    kind.as_str().replace('_', " ")
}

fn deleted(kind: ResourceType, id: Uuid, exists: bool) -> Finding {
    if exists {
        Finding::NotYet(format!("{} {id} still exists", noun(kind)))
    } else {
        done(
            TaskState::Succeeded,
            format!("{} {id} no longer exists", noun(kind)),
            Some(Resource { type_: kind, id }),
        )
    }
}

/// `matches`: `None` when the object is gone, else whether it has the requested settings.
fn changed(kind: ResourceType, id: Uuid, matches: Option<bool>) -> Finding {
    match matches {
        None => done(
            TaskState::Failed,
            format!("{} {id} no longer exists", noun(kind)),
            None,
        ),
        Some(true) => done(
            TaskState::Succeeded,
            format!("{} {id} has the requested settings", noun(kind)),
            Some(Resource { type_: kind, id }),
        ),
        Some(false) => Finding::NotYet(format!(
            "{} {id} did not take the requested settings",
            noun(kind)
        )),
    }
}

/// The settlement of a task EM lost: what EM's objects prove, or — once `waited` reaches
/// `grace` without proof — failure; `None` to look again later.
pub fn settle_lost(finding: Finding, waited: Duration, grace: Duration) -> Option<Settlement> {
    let settled = |state, what: String, resource| {
        Some(Settlement {
            state,
            message: Some(format!(
                "Enterprise Manager lost track of this task; settled by looking at EM's objects: {what}"
            )),
            resource,
        })
    };
    match finding {
        Finding::Done {
            state,
            what,
            resource,
        } => settled(state, what, resource),
        Finding::NotYet(what) if waited >= grace => settled(
            TaskState::Failed,
            format!("{what} within {}", humanize(grace)),
            None,
        ),
        Finding::NotYet(_) => None,
    }
}

/// The settlement of a task whose recorded request cannot be read back: nothing to judge by.
pub fn unreadable() -> Settlement {
    Settlement {
        state: TaskState::Failed,
        message: Some(
            "Enterprise Manager lost track of this task; settled by looking at EM's objects: the stored request is unreadable"
                .into(),
        ),
        resource: None,
    }
}

fn gateway_matches(g: &xml::CloudGateway, c: &CloudGatewayChange) -> bool {
    let network_ok = match &c.network {
        None => true,
        Some(Network::Direct) => g.network_mode == xml::NetworkMode::Direct,
        Some(Network::Nat { external_ip }) => {
            g.network_mode == xml::NetworkMode::Nat
                && g.external_ip
                    .as_deref()
                    .is_some_and(|ip| ip.eq_ignore_ascii_case(external_ip.as_str()))
        }
    };
    network_ok
        && c.enabled.is_none_or(|e| g.enabled == Some(e))
        && c.external_port
            .is_none_or(|p| g.external_port == Some(p.get()))
        && c.internal_port
            .is_none_or(|p| g.internal_port == Some(p.get()))
        && c.description
            .as_ref()
            .is_none_or(|d| g.description.as_deref().unwrap_or("") == d.as_str())
}

fn pool_matches(p: &xml::CloudGatewayPool, c: &CloudGatewayPoolChange) -> bool {
    let same = |have: &[String], want: Vec<Uuid>| {
        let mut have: Vec<Uuid> = have.iter().filter_map(|u| guid(u)).collect();
        let mut want = want;
        have.sort();
        want.sort();
        have == want
    };
    c.name.as_ref().is_none_or(|n| p.name == n.as_str())
        && c.description
            .as_ref()
            .is_none_or(|d| p.description.as_deref().unwrap_or("") == d.as_str())
        && c.gateways
            .as_ref()
            .is_none_or(|g| same(&p.cloud_gateways.uids, g.iter().map(|u| u.id()).collect()))
        && c.tenants
            .as_ref()
            .is_none_or(|t| same(&p.cloud_tenants.uids, t.iter().map(|u| u.id()).collect()))
}

fn tenant_matches(t: &xml::CloudTenant, c: &CloudTenantChange) -> bool {
    let same_second = |a: DateTime<Utc>, b: DateTime<Utc>| a.timestamp() == b.timestamp();
    let lease_ok = match c.lease_expires_at {
        Edit::Keep => true,
        Edit::Clear => t.lease_options.and_then(|l| l.expires()).is_none(),
        Edit::Set(at) => t
            .lease_options
            .and_then(|l| l.expires())
            .is_some_and(|have| same_second(have, at)),
    };
    let throttling_ok = match c.throttling {
        Edit::Keep => true,
        Edit::Clear => t.throttling_enabled != Some(true),
        Edit::Set(want) => {
            t.throttling_enabled == Some(true)
                && t.throttling_speed_limit == Some(want.speed_limit.get())
                && t.throttling_speed_unit.map(|u| format!("{u:?}"))
                    == Some(want.unit.as_str().to_string())
        }
    };
    let protection_ok = match c.backup_protection_days {
        Edit::Keep => true,
        Edit::Clear => t.backup_protection_enabled != Some(true),
        Edit::Set(days) => {
            t.backup_protection_enabled == Some(true)
                && t.backup_protection_period == Some(days.get())
        }
    };
    let pools_ok = c.cloud_gateway_pools.as_ref().is_none_or(|want| {
        let mut have: Vec<Uuid> = t
            .cloud_gateway_pools
            .uids
            .iter()
            .filter_map(|u| guid(u))
            .collect();
        let mut want: Vec<Uuid> = want.iter().map(|p| p.id()).collect();
        have.sort();
        want.sort();
        have == want
    });
    let quotas_ok = c.backup_resources.iter().all(|resize| {
        t.resources
            .items
            .iter()
            .any(|q| q.id == resize.id && q.repository_quota.quota == resize.quota_mb.get())
    });
    // The password cannot be read back: a change of it alone is judged by the rest.
    lease_ok
        && throttling_ok
        && protection_ok
        && pools_ok
        && quotas_ok
        && c.enabled.is_none_or(|e| t.enabled == Some(e))
        && c.description
            .as_ref()
            .is_none_or(|d| t.description.as_deref().unwrap_or("") == d.as_str())
        && c.max_concurrent_tasks
            .is_none_or(|n| t.max_concurrent_tasks == Some(n.get()))
        && c.failover_to_other_gateways
            .is_none_or(|f| t.failover_to_others_gateways_if_fail == Some(f))
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 120 {
        format!("{} minutes", s / 60)
    } else if s >= 1 {
        format!("{s} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        BackupServerUid, CloudGatewayUid, Description, HostName, NewCloudGateway,
        NewCloudGatewayPool, PoolName, Port,
    };

    const VBR01: &str = "29e5d158-1f58-44bc-bbaa-2752d787a91d";
    const GW: &str = "3e4e6d17-ee2a-430f-807c-8d92af2a5551";
    const POOL: &str = "9d3c7f6e-52a1-4f0b-9a33-2f6c51d4e7a8";

    /// EM's `CloudGateway` entity, as `GET /cloud/gateways/{id}?format=Entity` answers it.
    fn gateway_xml(host: &str, enabled: bool, description: &str) -> xml::CloudGateway {
        xml::from_xml(&format!(
            r#"<CloudGateway Href="https://em:9398/api/cloud/gateways/{GW}?format=Entity" Type="CloudGateway" Name="{host}" UID="urn:veeam:CloudGateway:{GW}" xmlns="http://www.veeam.com/ent/v1.0">
  <Links><Link Href="https://em:9398/api/backupServers/{VBR01}" Name="vbr01" Type="BackupServerReference" Rel="Up"/></Links>
  <Description>{description}</Description><Enabled>{enabled}</Enabled><IncomingPort>6180</IncomingPort>
  <ExternalIP>{host}</ExternalIP><ExternalPort>6180</ExternalPort><InternalPort>6180</InternalPort>
  <NetworkMode>Direct</NetworkMode></CloudGateway>"#
        ))
        .unwrap()
    }

    fn pool_xml(name: &str, gateways: &[&str]) -> xml::CloudGatewayPool {
        let uids: String = gateways
            .iter()
            .map(|g| format!("<CloudGatewayUid>urn:veeam:CloudGateway:{g}</CloudGatewayUid>"))
            .collect();
        xml::from_xml(&format!(
            r#"<CloudGatewayPool Href="https://em:9398/api/cloud/gatewayPools/{POOL}?format=Entity" Type="CloudGatewayPool" Name="{name}" UID="urn:veeam:CloudGatewayPool:{POOL}" xmlns="http://www.veeam.com/ent/v1.0">
  <Links><Link Href="https://em:9398/api/backupServers/{VBR01}" Name="vbr01" Type="BackupServerReference" Rel="Up"/></Links>
  <Name>{name}</Name><Description>d</Description><CloudGateways>{uids}</CloudGateways><CloudTenants/></CloudGatewayPool>"#
        ))
        .unwrap()
    }

    fn new_gateway(host: &str) -> Command {
        Command::CreateCloudGateway(NewCloudGateway {
            backup_server: BackupServerUid::parse(VBR01).unwrap(),
            host: HostName::parse(host).unwrap(),
            description: None,
            network: Network::Direct,
            external_port: Port::CLOUD_GATEWAY_DEFAULT,
            internal_port: Port::CLOUD_GATEWAY_DEFAULT,
        })
    }

    fn id(text: &str) -> Uuid {
        Uuid::parse_str(text).unwrap()
    }

    #[test]
    fn the_fixtures_are_ems_documents() {
        let g = gateway_xml("gw01.example.local", true, "d");
        assert_eq!(g.name, "gw01.example.local");
        assert_eq!(backup_server_of(&g.links), Some(id(VBR01)));
        assert_eq!(pool_xml("P", &[GW]).cloud_gateways.uids.len(), 1);
    }

    #[test]
    fn a_lost_create_is_judged_by_whether_its_object_appeared() {
        let seen = EmObjects {
            gateways: Some(vec![gateway_xml("GW01.example.local", true, "")]),
            ..Default::default()
        };
        let cases = [
            ("gw01.example.local", &seen, true),
            ("gw02.example.local", &seen, false),
        ];
        for (host, em, exists) in cases {
            match judge(&new_gateway(host), em) {
                Finding::Done {
                    state, resource, ..
                } => {
                    assert!(exists, "{host}");
                    assert_eq!(state, TaskState::Succeeded);
                    assert_eq!(resource.map(|r| r.id), Some(id(GW)));
                }
                Finding::NotYet(what) => {
                    assert!(!exists, "{host}");
                    assert!(what.contains(host), "{what}");
                }
            }
        }
        // Another backup server's gateway of the same name is not ours.
        let other = Command::CreateCloudGateway(NewCloudGateway {
            backup_server: BackupServerUid::parse("8c88c6d6-931f-4044-8c0b-7a0c5f188b00").unwrap(),
            ..match new_gateway("gw01.example.local") {
                Command::CreateCloudGateway(c) => c,
                _ => unreachable!(),
            }
        });
        assert!(matches!(judge(&other, &seen), Finding::NotYet(_)));
        assert!(matches!(
            judge(&new_gateway("gw01.example.local"), &EmObjects::default()),
            Finding::NotYet(_)
        ));
    }

    #[test]
    fn a_lost_pool_create_is_judged_by_name_on_its_backup_server() {
        let command = Command::CreateCloudGatewayPool(NewCloudGatewayPool {
            backup_server: BackupServerUid::parse(VBR01).unwrap(),
            name: PoolName::parse("EU pool").unwrap(),
            description: None,
            gateways: vec![CloudGatewayUid::parse(GW).unwrap()],
            tenants: vec![],
        });
        let em = EmObjects {
            pools: Some(vec![pool_xml("eu POOL", &[GW])]),
            ..Default::default()
        };
        assert!(matches!(
            judge(&command, &em),
            Finding::Done {
                state: TaskState::Succeeded,
                ..
            }
        ));
        let none = EmObjects {
            pools: Some(vec![]),
            ..Default::default()
        };
        assert!(matches!(judge(&command, &none), Finding::NotYet(_)));
    }

    #[test]
    fn a_lost_delete_succeeds_once_the_object_is_gone() {
        let g = id(GW);
        let gone = EmObjects {
            gateway: HashMap::from([(g, None)]),
            ..Default::default()
        };
        let still = EmObjects {
            gateway: HashMap::from([(g, Some(gateway_xml("gw", true, "")))]),
            ..Default::default()
        };
        assert!(matches!(
            judge(&Command::DeleteCloudGateway(g), &gone),
            Finding::Done {
                state: TaskState::Succeeded,
                resource: Some(_),
                ..
            }
        ));
        assert!(matches!(
            judge(&Command::DeleteCloudGateway(g), &still),
            Finding::NotYet(_)
        ));
        let p = id(POOL);
        let pool_gone = EmObjects {
            pool: HashMap::from([(p, None)]),
            ..Default::default()
        };
        assert!(matches!(
            judge(&Command::DeleteCloudGatewayPool(p), &pool_gone),
            Finding::Done {
                state: TaskState::Succeeded,
                ..
            }
        ));
    }

    #[test]
    fn a_lost_change_succeeds_when_the_object_has_the_requested_settings() {
        let g = id(GW);
        let disable = CloudGatewayChange {
            enabled: Some(false),
            description: Some(Description::parse("maintenance").unwrap()),
            ..Default::default()
        };
        let cases = [
            (Some(gateway_xml("gw", false, "maintenance")), "succeeded"),
            (Some(gateway_xml("gw", true, "maintenance")), "not yet"),
            (Some(gateway_xml("gw", false, "other")), "not yet"),
            (None, "failed"),
        ];
        for (current, expected) in cases {
            let em = EmObjects {
                gateway: HashMap::from([(g, current)]),
                ..Default::default()
            };
            let got = match judge(&Command::UpdateCloudGateway(g, disable.clone()), &em) {
                Finding::Done { state, .. } => state.as_str(),
                Finding::NotYet(_) => "not yet",
            };
            assert_eq!(got, expected);
        }
        let p = id(POOL);
        let regroup = CloudGatewayPoolChange {
            gateways: Some(vec![CloudGatewayUid::parse(GW).unwrap()]),
            ..Default::default()
        };
        for (gateways, expected) in [(vec![GW], "succeeded"), (vec![], "not yet")] {
            let em = EmObjects {
                pool: HashMap::from([(p, Some(pool_xml("P", &gateways)))]),
                ..Default::default()
            };
            let got = match judge(&Command::UpdateCloudGatewayPool(p, regroup.clone()), &em) {
                Finding::Done { state, .. } => state.as_str(),
                Finding::NotYet(_) => "not yet",
            };
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_lost_task_waits_for_proof_until_the_grace_period_is_over() {
        let grace = Duration::from_secs(300);
        let proof = Finding::Done {
            state: TaskState::Succeeded,
            what: "cloud gateway gw exists".into(),
            resource: None,
        };
        let settled = settle_lost(proof, Duration::ZERO, grace).unwrap();
        assert_eq!(settled.state, TaskState::Succeeded);
        assert!(
            settled
                .message
                .unwrap()
                .ends_with("cloud gateway gw exists")
        );
        let missing = || Finding::NotYet("no cloud gateway for gw appeared".into());
        assert_eq!(
            settle_lost(missing(), Duration::from_secs(299), grace),
            None
        );
        let failed = settle_lost(missing(), grace, grace).unwrap();
        assert_eq!(failed.state, TaskState::Failed);
        assert!(
            failed
                .message
                .unwrap()
                .ends_with("no cloud gateway for gw appeared within 5 minutes")
        );
    }

    #[test]
    fn a_finished_em_task_ends_ours_with_ems_result() {
        let task = |body: &str| -> xml::Task {
            xml::from_xml(&format!(
                r#"<Task Type="Task" Href="https://em:9398/api/tasks/task-1" xmlns="http://www.veeam.com/ent/v1.0"><Links>{body}</Links><TaskId>task-1</TaskId><State>Finished</State><Operation>CreateCloudGateway</Operation><Result Success="true"><Message>Ok</Message></Result></Task>"#
            ))
            .unwrap()
        };
        let related = format!(
            r#"<Link Href="https://em:9398/api/cloud/gateways/{GW}?format=Entity" Type="CloudGateway" Rel="Related"/>"#
        );
        let created = from_em_task(Operation::CreateCloudGateway, None, &task(&related));
        assert_eq!(created.state, TaskState::Succeeded);
        assert_eq!(created.resource.map(|r| r.id), Some(id(GW)));
        let no_link = from_em_task(Operation::CreateCloudGateway, None, &task(""));
        assert_eq!(no_link.resource, None);
        let changed = from_em_task(Operation::UpdateCloudGateway, Some(id(GW)), &task(""));
        assert_eq!(changed.resource.map(|r| r.id), Some(id(GW)));

        let failed: xml::Task = xml::from_xml(
            r#"<Task Type="Task" Href="h" xmlns="http://www.veeam.com/ent/v1.0"><TaskId>task-2</TaskId><State>Finished</State><Operation>CreateCloudGateway</Operation><Result Success="false"><Message>Server gw is already a cloud gateway.</Message></Result></Task>"#,
        )
        .unwrap();
        let settled = from_em_task(Operation::CreateCloudGateway, None, &failed);
        assert_eq!(settled.state, TaskState::Failed);
        assert_eq!(
            settled.message.as_deref(),
            Some("Server gw is already a cloud gateway.")
        );
    }

    const TENANT: &str = "3f2a1c10-0000-4000-8000-00000000e901";
    const QUOTA: &str = "3f2a1c10-0000-4000-8000-00000000e911";
    const REPO: &str = "3f2a1c10-0000-4000-8000-00000000a101";

    /// EM's `CloudTenant` entity with one quota (or none), disabled or not.
    fn tenant_xml(name: &str, enabled: bool, quota_mb: Option<u64>) -> xml::CloudTenant {
        let resources = quota_mb.map_or(String::new(), |mb| {
            format!(
                r#"<CloudTenantResource Id="{QUOTA}"><RepositoryQuota><DisplayName>C</DisplayName><RepositoryUid>urn:veeam:Repository:{REPO}</RepositoryUid><Quota>{mb}</Quota><UsedQuota>0</UsedQuota></RepositoryQuota></CloudTenantResource>"#
            )
        });
        xml::from_xml(&format!(
            r#"<CloudTenant Name="{name}" UID="urn:veeam:CloudTenant:{TENANT}" xmlns="http://www.veeam.com/ent/v1.0">
  <Links><Link Href="https://em:9398/api/backupServers/{VBR01}" Name="vbr01" Type="BackupServerReference" Rel="Up"/></Links>
  <Password/><Enabled>{enabled}</Enabled><LeaseOptions Enabled="false"/><Resources>{resources}</Resources>
  <ThrottlingEnabled>false</ThrottlingEnabled><ThrottlingSpeedLimit>1</ThrottlingSpeedLimit><ThrottlingSpeedUnit>Mbps</ThrottlingSpeedUnit>
  <MaxConcurrentTasks>1</MaxConcurrentTasks></CloudTenant>"#
        ))
        .unwrap()
    }

    #[test]
    fn lost_tenant_commands_are_judged_by_ems_objects() {
        use crate::domain::{
            NewBackupResource, NewCloudTenant, NewTenantBackupResource, QuotaMb, QuotaResize,
            RepositoryUid, ResourceName, TenantBackupResource, TenantName,
        };
        use crate::tasks::command::TenantDeletion;
        let id = Uuid::parse_str(TENANT).unwrap();
        let quota = Uuid::parse_str(QUOTA).unwrap();
        let create = Command::CreateCloudTenant(NewCloudTenant {
            backup_server: BackupServerUid::parse(VBR01).unwrap(),
            name: TenantName::parse("ABC Ltd").unwrap(),
            description: None,
            password: None,
            enabled: true,
            lease_expires_at: None,
            backup_resources: Vec::new(),
            max_concurrent_tasks: None,
            throttling: None,
            backup_protection_days: None,
            cloud_gateway_pools: Vec::new(),
            failover_to_other_gateways: None,
        });
        let suspend = Command::UpdateCloudTenant(
            id,
            CloudTenantChange {
                enabled: Some(false),
                backup_resources: vec![QuotaResize {
                    id: quota,
                    quota_mb: QuotaMb::parse(4096).unwrap(),
                }],
                ..Default::default()
            },
        );
        let add = Command::CreateCloudTenantBackupResource(NewTenantBackupResource {
            tenant: id,
            resource: NewBackupResource {
                name: ResourceName::parse("C").unwrap(),
                repository: RepositoryUid::parse(REPO).unwrap(),
                quota_mb: QuotaMb::parse(4096).unwrap(),
                wan_accelerator: None,
            },
        });
        let remove = Command::DeleteCloudTenantBackupResource(TenantBackupResource {
            tenant: id,
            resource: quota,
        });
        let delete = Command::DeleteCloudTenant(id, TenantDeletion::default());
        let with = |t: Option<xml::CloudTenant>| EmObjects {
            tenants: Some(t.clone().into_iter().collect()),
            tenant: HashMap::from([(id, t)]),
            ..Default::default()
        };
        let succeeded = |kind, id| Some((TaskState::Succeeded, Some(Resource { type_: kind, id })));
        let cases = [
            (
                "create: the name exists, any case",
                &create,
                with(Some(tenant_xml("abc ltd", true, None))),
                succeeded(ResourceType::CloudTenant, id),
            ),
            ("create: not yet", &create, with(None), None),
            (
                "suspend: taken",
                &suspend,
                with(Some(tenant_xml("abc", false, Some(4096)))),
                succeeded(ResourceType::CloudTenant, id),
            ),
            (
                "suspend: quota not resized yet",
                &suspend,
                with(Some(tenant_xml("abc", false, Some(2048)))),
                None,
            ),
            (
                "suspend: still enabled",
                &suspend,
                with(Some(tenant_xml("abc", true, Some(4096)))),
                None,
            ),
            (
                "suspend: tenant gone",
                &suspend,
                with(None),
                Some((TaskState::Failed, None)),
            ),
            (
                "add quota: on the repository",
                &add,
                with(Some(tenant_xml("abc", true, Some(4096)))),
                succeeded(ResourceType::CloudTenantBackupResource, quota),
            ),
            (
                "add quota: not yet",
                &add,
                with(Some(tenant_xml("abc", true, None))),
                None,
            ),
            (
                "add quota: tenant gone",
                &add,
                with(None),
                Some((TaskState::Failed, None)),
            ),
            (
                "remove quota: gone",
                &remove,
                with(Some(tenant_xml("abc", true, None))),
                succeeded(ResourceType::CloudTenantBackupResource, quota),
            ),
            (
                "remove quota: still there",
                &remove,
                with(Some(tenant_xml("abc", true, Some(1024)))),
                None,
            ),
            (
                "delete: gone",
                &delete,
                with(None),
                succeeded(ResourceType::CloudTenant, id),
            ),
            (
                "delete: still there",
                &delete,
                with(Some(tenant_xml("abc", true, None))),
                None,
            ),
        ];
        for (what, command, em, expected) in cases {
            let got = match judge(command, &em) {
                Finding::Done {
                    state, resource, ..
                } => Some((state, resource)),
                Finding::NotYet(_) => None,
            };
            assert_eq!(got, expected, "{what}");
        }
        assert!(
            matches!(judge(&create, &EmObjects::default()), Finding::NotYet(_)),
            "unread"
        );
        let password_only = Command::UpdateCloudTenant(
            id,
            CloudTenantChange {
                password_changed: true,
                ..Default::default()
            },
        );
        match judge(&password_only, &with(Some(tenant_xml("abc", true, None)))) {
            Finding::Done { state, what, .. } => {
                assert_eq!(state, TaskState::Succeeded);
                assert!(
                    what.ends_with("cannot be read back from EM and was not checked"),
                    "{what}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
