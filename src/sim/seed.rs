//! The objects the simulator starts with: the default world, or a `--seed FILE` (JSON in the
//! shape of [`Seed`]). Files written before repositories existed still load: without a
//! `repositories` key every backup server gets two, without `wan_accelerators` one each.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::state::{
    BackupServer, Quota, Repository, RepositoryKind, Tenant, WanAccelerator, default_version,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SeedFile")]
pub struct Seed {
    pub backup_servers: Vec<BackupServer>,
    pub tenants: Vec<Tenant>,
    pub repositories: Vec<Repository>,
    pub wan_accelerators: Vec<WanAccelerator>,
}

/// A seed file as written: `repositories` and `wan_accelerators` may be left out.
#[derive(Deserialize)]
struct SeedFile {
    backup_servers: Vec<BackupServer>,
    #[serde(default)]
    tenants: Vec<Tenant>,
    #[serde(default)]
    repositories: Option<Vec<Repository>>,
    #[serde(default)]
    wan_accelerators: Option<Vec<WanAccelerator>>,
}

impl From<SeedFile> for Seed {
    fn from(file: SeedFile) -> Self {
        let servers = &file.backup_servers;
        let repositories = file.repositories.unwrap_or_else(|| {
            servers
                .iter()
                .flat_map(|b| {
                    [
                        repository(
                            derived(b.id, 0xa1),
                            "Default Backup Repository",
                            b.id,
                            RepositoryKind::WindowsLocal,
                            1024 * 1024,
                            800 * 1024,
                        ),
                        repository(
                            derived(b.id, 0xa2),
                            "Cloud Repository",
                            b.id,
                            RepositoryKind::WindowsLocal,
                            10 * 1024 * 1024,
                            9 * 1024 * 1024,
                        ),
                    ]
                })
                .collect()
        });
        let wan_accelerators = file.wan_accelerators.unwrap_or_else(|| {
            servers
                .iter()
                .map(|b| WanAccelerator {
                    id: derived(b.id, 0xaa),
                    name: format!("WAN accelerator of {}", b.name),
                    backup_server: b.id,
                })
                .collect()
        });
        Seed {
            backup_servers: file.backup_servers,
            tenants: file.tenants,
            repositories,
            wan_accelerators,
        }
    }
}

/// The same id on every start for the same backup server, so tests can name it.
fn derived(server: Uuid, n: u128) -> Uuid {
    Uuid::from_u128(server.as_u128() ^ n)
}

fn repository(
    id: Uuid,
    name: &str,
    backup_server: Uuid,
    kind: RepositoryKind,
    capacity_mb: i64,
    free_mb: i64,
) -> Repository {
    Repository {
        id,
        name: name.into(),
        backup_server,
        kind,
        capacity_mb,
        free_mb,
    }
}

const TB: i64 = 1024 * 1024;
const GB: i64 = 1024;

impl Default for Seed {
    fn default() -> Self {
        let vbr01 = Uuid::from_u128(0x29e5d158_1f58_44bc_bbaa_2752d787a91d);
        let vbr02 = Uuid::from_u128(0x8c88c6d6_931f_4044_8c0b_7a0c5f188b00);
        let seeded = |n: u128| Uuid::from_u128(0x3f2a1c10_0000_4000_8000_000000000000 | n);
        let mut acme = Tenant::new(
            Uuid::from_u128(0x5cf540af_512a_5ba8_9f12_77fba51207e0),
            "acme",
            vbr01,
        );
        acme.description = "Acme Corp".into();
        acme.resources.push(Quota {
            id: seeded(0xe911),
            name: "Cloud Repository".into(),
            repository: seeded(0xa101),
            wan_accelerator: None,
            quota_mb: 100 * GB,
            used_mb: 20 * GB,
            visible_at: None,
        });
        let mut globex = Tenant::new(seeded(0xe902), "globex", vbr01);
        globex.description = "Globex".into();
        Seed {
            backup_servers: vec![
                BackupServer {
                    id: vbr01,
                    name: "vbr01.example.local".into(),
                    description: "Cloud Connect backup server (any host can take the gateway role)"
                        .into(),
                    port: 9392,
                    version: default_version(),
                    managed_servers: None,
                },
                BackupServer {
                    id: vbr02,
                    name: "vbr02.example.local".into(),
                    description: "Backup server with two managed servers".into(),
                    port: 9392,
                    version: default_version(),
                    managed_servers: Some(vec![
                        "gw-a.example.local".into(),
                        "gw-b.example.local".into(),
                    ]),
                },
            ],
            tenants: vec![acme, globex],
            repositories: vec![
                repository(
                    seeded(0xa101),
                    "Cloud Repository 01",
                    vbr01,
                    RepositoryKind::WindowsLocal,
                    10 * TB,
                    8 * TB,
                ),
                repository(
                    seeded(0xa102),
                    "Scale-out Repository 01",
                    vbr01,
                    RepositoryKind::Extendable,
                    50 * TB,
                    40 * TB,
                ),
                repository(
                    seeded(0xa103),
                    "Nearly Full Repository",
                    vbr01,
                    RepositoryKind::WindowsLocal,
                    2 * TB,
                    50 * GB,
                ),
                repository(
                    seeded(0xa201),
                    "Cloud Repository 02",
                    vbr02,
                    RepositoryKind::LinuxLocal,
                    4 * TB,
                    3 * TB,
                ),
                repository(
                    seeded(0xa202),
                    "Default Backup Repository",
                    vbr02,
                    RepositoryKind::WindowsLocal,
                    TB,
                    512 * GB,
                ),
            ],
            wan_accelerators: vec![
                WanAccelerator {
                    id: seeded(0xaa01),
                    name: "wan01.example.local".into(),
                    backup_server: vbr01,
                },
                WanAccelerator {
                    id: seeded(0xaa02),
                    name: "wan02.example.local".into(),
                    backup_server: vbr02,
                },
            ],
        }
    }
}

impl Seed {
    /// What a seed file must get right for the world to make sense; the first problem found.
    pub fn check(&self) -> Result<(), String> {
        let mut ids = HashSet::new();
        let mut unique = |id: Uuid, what: &str| {
            if ids.insert(id) {
                Ok(())
            } else {
                Err(format!("the id {id} of {what} is used twice"))
            }
        };
        let server = |id: Uuid, what: &str| {
            self.backup_servers
                .iter()
                .find(|b| b.id == id)
                .map(|_| ())
                .ok_or_else(|| format!("{what} names an unknown backup server {id}"))
        };
        for b in &self.backup_servers {
            unique(b.id, &format!("backup server {}", b.name))?;
        }
        for r in &self.repositories {
            let what = format!("repository {}", r.name);
            unique(r.id, &what)?;
            server(r.backup_server, &what)?;
            if r.capacity_mb < 0 || r.free_mb < 0 || r.free_mb > r.capacity_mb {
                return Err(format!("{what}: free_mb must be between 0 and capacity_mb"));
            }
        }
        for w in &self.wan_accelerators {
            let what = format!("WAN accelerator {}", w.name);
            unique(w.id, &what)?;
            server(w.backup_server, &what)?;
        }
        let mut names = HashSet::new();
        for t in &self.tenants {
            let what = format!("tenant {}", t.name);
            unique(t.id, &what)?;
            server(t.backup_server, &what)?;
            if !names.insert((t.backup_server, t.name.to_ascii_lowercase())) {
                return Err(format!("{what} is named twice on one backup server"));
            }
            let mut repositories = HashSet::new();
            for q in &t.resources {
                let what = format!("quota {} of tenant {}", q.name, t.name);
                unique(q.id, &what)?;
                let repository = self
                    .repositories
                    .iter()
                    .find(|r| r.id == q.repository)
                    .ok_or_else(|| format!("{what} names an unknown repository"))?;
                if repository.backup_server != t.backup_server {
                    return Err(format!(
                        "{what}: its repository is on another backup server"
                    ));
                }
                if !repositories.insert(q.repository) {
                    return Err(format!("{what}: a second quota on one repository"));
                }
                if q.quota_mb < 1024 || q.used_mb < 0 {
                    return Err(format!(
                        "{what}: quota_mb must be at least 1024 and used_mb not negative"
                    ));
                }
            }
        }
        Ok(())
    }

    /// One line per seeded object, for printing at start.
    pub fn describe(&self) -> Vec<String> {
        let server_name = |id: Uuid| {
            self.backup_servers
                .iter()
                .find(|b| b.id == id)
                .map(|b| b.name.as_str())
                .unwrap_or("?")
        };
        let mut lines = Vec::new();
        for b in &self.backup_servers {
            lines.push(format!(
                "backup server   {:<26} urn:veeam:BackupServer:{}",
                b.name, b.id
            ));
        }
        for r in &self.repositories {
            lines.push(format!(
                "repository      {:<26} urn:veeam:Repository:{}  ({}, {} GB free of {} GB, on {})",
                r.name,
                r.id,
                r.kind.as_em(),
                r.free_mb / 1024,
                r.capacity_mb / 1024,
                server_name(r.backup_server)
            ));
        }
        for w in &self.wan_accelerators {
            lines.push(format!(
                "WAN accelerator {:<26} urn:veeam:WanAccelerator:{}  (on {})",
                w.name,
                w.id,
                server_name(w.backup_server)
            ));
        }
        for t in &self.tenants {
            lines.push(format!(
                "cloud tenant    {:<26} urn:veeam:CloudTenant:{}",
                t.name, t.id
            ));
            for q in &t.resources {
                lines.push(format!(
                    "  storage quota {:<26} id {}  ({} MB, {} MB used, on urn:veeam:Repository:{})",
                    q.name, q.id, q.quota_mb, q.used_mb, q.repository
                ));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_seed_holds_together() {
        let seed = Seed::default();
        seed.check().unwrap();
        let vbr01 = seed.backup_servers[0].id;
        let on_vbr01: Vec<&Repository> = seed
            .repositories
            .iter()
            .filter(|r| r.backup_server == vbr01)
            .collect();
        assert!(
            on_vbr01
                .iter()
                .any(|r| r.kind == RepositoryKind::Extendable)
        );
        assert!(on_vbr01.iter().any(|r| r.free_mb < r.capacity_mb / 10));
        for b in &seed.backup_servers {
            let repositories = seed.repositories.iter();
            assert!(repositories.filter(|r| r.backup_server == b.id).count() >= 2);
            assert!(
                seed.wan_accelerators
                    .iter()
                    .any(|w| w.backup_server == b.id)
            );
        }
        assert_eq!(seed.tenants[0].resources.len(), 1);
        assert!(
            seed.describe()
                .iter()
                .any(|l| l.contains("Nearly Full Repository"))
        );
    }

    #[test]
    fn an_old_seed_file_gets_repositories_and_wan_accelerators() {
        let old = r#"{"backup_servers": [{"id": "11111111-1111-4111-8111-111111111111", "name": "b1"}],
                      "tenants": [{"id": "22222222-2222-4222-8222-222222222222", "name": "t1",
                                   "backup_server": "11111111-1111-4111-8111-111111111111"}]}"#;
        let seed: Seed = serde_json::from_str(old).unwrap();
        seed.check().unwrap();
        assert_eq!(seed.repositories.len(), 2);
        assert_eq!(seed.wan_accelerators.len(), 1);
        assert_eq!(seed.tenants[0].max_concurrent_tasks, 1, "EM's defaults");
        let again: Seed = serde_json::from_str(old).unwrap();
        assert_eq!(
            again.repositories, seed.repositories,
            "the same ids on every start"
        );
        let none: Seed =
            serde_json::from_str(r#"{"backup_servers": [], "repositories": []}"#).unwrap();
        assert!(none.repositories.is_empty(), "an empty list means none");
    }

    #[test]
    fn a_seed_with_quotas_is_checked() {
        let text = r#"{"backup_servers": [{"id": "11111111-1111-4111-8111-111111111111", "name": "b1"}],
            "repositories": [{"id": "33333333-3333-4333-8333-333333333333", "name": "r1",
                              "backup_server": "11111111-1111-4111-8111-111111111111",
                              "kind": "Extendable", "capacity_mb": 2048, "free_mb": 1024}],
            "tenants": [{"id": "22222222-2222-4222-8222-222222222222", "name": "t1",
                         "backup_server": "11111111-1111-4111-8111-111111111111",
                         "resources": [{"name": "q", "repository": "33333333-3333-4333-8333-333333333333",
                                        "quota_mb": 1024, "used_mb": 10}]}]}"#;
        let seed: Seed = serde_json::from_str(text).unwrap();
        seed.check().unwrap();
        assert_eq!(seed.tenants[0].resources[0].used_mb, 10);
        let bad = text.replace(r#""quota_mb": 1024"#, r#""quota_mb": 10"#);
        let seed: Seed = serde_json::from_str(&bad).unwrap();
        assert!(seed.check().unwrap_err().contains("at least 1024"));
        let unknown = text.replace(r#""repository": "33333333"#, r#""repository": "43333333"#);
        let seed: Seed = serde_json::from_str(&unknown).unwrap();
        assert!(seed.check().unwrap_err().contains("unknown repository"));
    }
}
