//! Turning a validated command into one EM request, and recording it as a task.
//!
//! Order matters for "nothing accepted is ever lost": the task row is written *before* EM is
//! called. If EM accepts, the row gets EM's task id and session; if EM refuses or was never
//! reached, the row is removed and the caller gets the error; if EM's answer is lost (timeout,
//! dropped connection) or the process dies after EM accepted, the row stays `running` and the
//! poller settles it by looking at EM's objects.

use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use crate::domain::{
    BackupServerUid, CloudGatewayChange, CloudGatewayPoolChange, FieldError, Metadata, Network,
    NewCloudGateway, NewCloudGatewayPool, Operation, TaskId,
};
use crate::em::xml::{self, Namespace, NetworkMode};
use crate::em::{EmClient, EmError, Submitted};
use crate::store::{
    Batcher, EmAttach, IdempotencyKey, NewTask, Store, StoreError, TaskRecord, accepted_answer,
};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Em(#[from] EmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object to change does not exist on EM.
    #[error("{0}")]
    NotFound(String),
    /// The request names EM objects that EM does not have (checked before anything is
    /// recorded or sent): one entry per field.
    #[error("the request conflicts with Enterprise Manager's objects")]
    Conflicts(Vec<FieldError>),
}

/// Who asked, for the task's record.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub api_key_id: Option<String>,
    pub metadata: Metadata,
    /// The request's Idempotency-Key: the task and the answer are recorded under it.
    pub idempotency: Option<IdempotencyKey>,
}

pub struct Operations {
    store: Store,
    em: Arc<EmClient>,
    backup_servers: KnownBackupServers,
    /// Intents, committed durably, many requests to a commit under load.
    intents: Batcher<(NewTask, Option<IdempotencyKey>), TaskRecord>,
    /// EM's task ids, recorded the same way.
    attaches: Batcher<EmAttach, Option<TaskRecord>>,
}

/// Writes gathered into one transaction, at most.
const WRITE_BATCH: usize = 64;

impl Operations {
    /// `owner` is this replica's id: the owner of the EM sessions it submits through. Starts
    /// the writers, so it must run inside the runtime.
    pub fn new(store: Store, em: Arc<EmClient>, owner: String) -> Self {
        let intents = {
            let store = store.clone();
            Batcher::start(
                WRITE_BATCH,
                move |batch: Vec<(NewTask, Option<IdempotencyKey>)>| {
                    let store = store.clone();
                    async move { store.insert_tasks(&batch).await }
                },
            )
        };
        let attaches = {
            let store = store.clone();
            Batcher::start(WRITE_BATCH, move |batch: Vec<EmAttach>| {
                let (store, owner) = (store.clone(), owner.clone());
                async move { store.attach_em_tasks(&owner, &batch).await }
            })
        };
        Operations {
            store,
            em,
            backup_servers: KnownBackupServers::default(),
            intents,
            attaches,
        }
    }

    pub async fn create_cloud_gateway(
        &self,
        command: &NewCloudGateway,
        by: Requester,
    ) -> Result<TaskRecord, SubmitError> {
        self.check_backup_server(command.backup_server).await?;
        let spec = gateway_spec(command);
        self.submit(Operation::CreateCloudGateway, None, command, by, || {
            self.em.create_cloud_gateway(&spec)
        })
        .await
    }

    pub async fn create_cloud_gateway_pool(
        &self,
        command: &NewCloudGatewayPool,
        by: Requester,
    ) -> Result<TaskRecord, SubmitError> {
        self.check_backup_server(command.backup_server).await?;
        let spec = pool_spec(command);
        self.submit(Operation::CreateCloudGatewayPool, None, command, by, || {
            self.em.create_cloud_gateway_pool(&spec)
        })
        .await
    }

    /// EM's PUT takes the whole entity: read it, apply the change, write it back.
    pub async fn update_cloud_gateway(
        &self,
        id: Uuid,
        change: &CloudGatewayChange,
        by: Requester,
    ) -> Result<TaskRecord, SubmitError> {
        let current = self
            .em
            .cloud_gateway(id)
            .await?
            .ok_or_else(|| SubmitError::NotFound(format!("no cloud gateway {id}")))?;
        let edit = gateway_edit(&current, change);
        self.submit(Operation::UpdateCloudGateway, Some(id), change, by, || {
            self.em.edit_cloud_gateway(id, &edit)
        })
        .await
    }

    pub async fn delete_cloud_gateway(
        &self,
        id: Uuid,
        by: Requester,
    ) -> Result<TaskRecord, SubmitError> {
        self.submit(Operation::DeleteCloudGateway, Some(id), &(), by, || {
            self.em.delete_cloud_gateway(id)
        })
        .await
    }

    pub async fn update_cloud_gateway_pool(
        &self,
        id: Uuid,
        change: &CloudGatewayPoolChange,
        by: Requester,
    ) -> Result<TaskRecord, SubmitError> {
        let current = self
            .em
            .cloud_gateway_pool(id)
            .await?
            .ok_or_else(|| SubmitError::NotFound(format!("no cloud gateway pool {id}")))?;
        let edit = pool_edit(&current, change);
        self.submit(
            Operation::UpdateCloudGatewayPool,
            Some(id),
            change,
            by,
            || self.em.edit_cloud_gateway_pool(id, &edit),
        )
        .await
    }

    pub async fn delete_cloud_gateway_pool(
        &self,
        id: Uuid,
        by: Requester,
    ) -> Result<TaskRecord, SubmitError> {
        self.submit(Operation::DeleteCloudGatewayPool, Some(id), &(), by, || {
            self.em.delete_cloud_gateway_pool(id)
        })
        .await
    }

    /// Refuses a backup server EM does not manage, before anything is recorded: EM would answer
    /// 400 for it anyway, but this way the caller learns which field is at fault. When EM's
    /// list cannot be read, EM judges the request itself: the check must not make a create
    /// depend on one more EM call succeeding.
    async fn check_backup_server(&self, uid: BackupServerUid) -> Result<(), SubmitError> {
        match self.backup_servers.has(&self.em, uid.id()).await {
            Ok(false) => Err(SubmitError::Conflicts(vec![FieldError {
                field: "backup_server_uid".into(),
                message: format!("Enterprise Manager manages no backup server {}", uid.urn()),
            }])),
            Ok(true) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "could not read EM's backup servers; EM will judge");
                Ok(())
            }
        }
    }

    async fn submit<C, F, Fut>(
        &self,
        operation: Operation,
        target_id: Option<Uuid>,
        command: &C,
        by: Requester,
        call: F,
    ) -> Result<TaskRecord, SubmitError>
    where
        C: serde::Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Submitted, EmError>>,
    {
        let intent = NewTask {
            id: TaskId::new(),
            operation,
            target_id,
            request: serde_json::to_value(command).unwrap_or_default(),
            metadata: by.metadata,
            api_key_id: by.api_key_id,
        };
        let key = by.idempotency.as_ref();
        let task = self.intents.write((intent, key.cloned())).await?;
        match call().await {
            Ok(submitted) => {
                let attached = self
                    .attaches
                    .write(EmAttach {
                        id: task.id,
                        em_task_id: submitted.task.task_id,
                        em_session_id: submitted.session.session_id,
                        key: key.cloned(),
                    })
                    .await;
                match attached {
                    Ok(Some(task)) => Ok(task),
                    Ok(None) => Ok(task),
                    Err(e) => {
                        // EM accepted and the intent is recorded: the poller settles it.
                        tracing::error!(task_id = %task.id, error = %e, "could not record EM's task id");
                        Ok(task)
                    }
                }
            }
            Err(EmError::OutcomeUnknown { reason, .. }) => {
                tracing::warn!(task_id = %task.id, %reason, "EM's answer was lost; the task will be settled from EM's objects");
                if let Some(key) = key
                    && let Err(e) = self
                        .store
                        .finish_idempotency(key, &accepted_answer(&task))
                        .await
                {
                    tracing::warn!(error = %e, "could not store the answer under its Idempotency-Key");
                }
                Ok(task)
            }
            Err(e) => {
                if let Err(store) = self.store.delete_task(task.id).await {
                    tracing::error!(task_id = %task.id, error = %store, "could not drop a refused task");
                }
                Err(e.into())
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

/// The ids of EM's backup servers, read again when an id is not among them (at most once a
/// second): backup servers are added rarely and almost never removed, so creates do not pay an
/// EM round trip for the check.
#[derive(Default)]
struct KnownBackupServers {
    known: std::sync::Mutex<(std::collections::HashSet<Uuid>, Option<std::time::Instant>)>,
}

impl KnownBackupServers {
    const REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

    async fn has(&self, em: &EmClient, id: Uuid) -> Result<bool, EmError> {
        let stale = {
            let known = self.lock();
            if known.0.contains(&id) {
                return Ok(true);
            }
            known.1.is_none_or(|at| at.elapsed() >= Self::REREAD_AFTER)
        };
        if !stale {
            return Ok(false);
        }
        let servers = em.backup_servers().await?;
        let ids: std::collections::HashSet<Uuid> = servers
            .iter()
            .filter_map(|b| Uuid::parse_str(xml::id_of(&b.uid)).ok())
            .collect();
        let found = ids.contains(&id);
        *self.lock() = (ids, Some(std::time::Instant::now()));
        Ok(found)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, (std::collections::HashSet<Uuid>, Option<std::time::Instant>)>
    {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}
