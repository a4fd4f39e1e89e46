//! The store, straight: the same suite on SQLite and on Postgres.

use std::time::Duration;

use sqlx::Connection;

use em_gateway::clock::{Clock, Timestamp};
use em_gateway::domain::{
    ApiKeyId, DeliveryState, Metadata, Operation, Owner, ReplicaId, Resource, ResourceType, Scope,
    TaskId, TaskState,
};
use em_gateway::store::{
    AttemptRecord, AttemptResult, Claim, EmAttach, IdempotencyKey, NewTask, NewWebhook,
    OrphanRules, PoolFor, RecordedAttempt, Settlement, Store, StoreError, TaskFilter, TaskRecord,
    UnsentLook,
};
use em_gateway::tasks::{OwnTasks, Read};

use crate::support::*;

both_databases!(
    a_task_is_settled_exactly_once,
    orphans_are_leased_to_one_replica_at_a_time,
    sessions_heartbeat_and_get_lost,
    api_keys_are_stored_as_hashes_and_revoked,
    migrations_run_twice_without_harm,
    a_deleted_subscriptions_attempts_are_found_through_an_index,
    a_batch_settles_only_what_is_still_running,
    attempts_are_recorded_in_batches_by_the_lease_holder_only,
    intents_and_em_task_ids_are_written_in_batches,
    keyed_intents_of_one_statement_are_linked_whatever_the_mix,
    em_task_ids_alone_are_recorded_in_one_statement,
    em_task_ids_written_behind_their_answers,
    intents_never_answered_are_looked_at_once_due_and_again_after_a_look,
    a_task_reads_back_whole_and_a_corrupt_one_is_refused,
);

async fn store(db: Db) -> Store {
    let store = Store::connect(&fresh_database(db).await)
        .await
        .expect("connect")
        .sealing_with(test_keyring());
    store.migrate().await.expect("migrate");
    store
}

fn new_task() -> NewTask {
    NewTask {
        id: TaskId::new(),
        operation: Operation::CreateCloudGateway,
        target_id: None,
        request: r#"{"host": "gw.example"}"#.into(),
        metadata: Metadata::default(),
        api_key_id: None,
        owner: Owner::default(),
        warnings: Vec::new(),
    }
}

fn now() -> Timestamp {
    Clock::system().now()
}

async fn insert(store: &Store) -> TaskRecord {
    store
        .insert_tasks(&[(new_task(), None)], now())
        .await
        .unwrap()
        .pop()
        .unwrap()
}

async fn attach(
    store: &Store,
    id: TaskId,
    em_task: &str,
    session: &str,
    owner: ReplicaId,
) -> Option<TaskRecord> {
    let mut tx = store.begin().await.unwrap();
    // As the submitter does for a session it has not registered yet: orphans are found from
    // the sessions table.
    tx.register_sessions(owner, &[(0, session.to_string())], now())
        .await
        .unwrap();
    let attach = EmAttach {
        id,
        em_task_id: em_task.into(),
        em_session_id: session.into(),
        at: now(),
    };
    let attached = tx.attach_em_tasks(owner, &[attach]).await.unwrap();
    tx.commit().await.unwrap();
    attached.into_iter().next().flatten()
}

/// Settles as the poller does: with the tasks' webhook events, in one transaction.
async fn settle(store: &Store, batch: &[(TaskId, Settlement)]) -> Vec<TaskRecord> {
    em_gateway::tasks::poller::settle(store, batch, now(), None)
        .await
        .unwrap()
        .0
}

/// Orphan rules that treat everything as lost now, with a lease of `lease`.
fn lost_now(lease: Duration) -> OrphanRules {
    let now = now();
    OrphanRules {
        now,
        lease_until: now + lease,
        unsent: UnsentLook::All { before: now },
        heartbeat_after: now,
    }
}

async fn a_task_is_settled_exactly_once(db: Db) {
    let store = store(db).await;
    let task = insert(&store).await;
    assert_eq!(task.state, TaskState::Running);
    let (r1, r2) = (ReplicaId::new(), ReplicaId::new());
    let attached = attach(&store, task.id, "task-9", "session-a", r1)
        .await
        .unwrap();
    assert_eq!(attached.em_task_id.as_deref(), Some("task-9"));
    assert_eq!(store.running_tasks_of(r1).await.unwrap().len(), 1);
    assert_eq!(store.running_tasks_of(r2).await.unwrap().len(), 0);

    let resource = Resource {
        type_: ResourceType::CloudGateway,
        id: uuid::Uuid::new_v4(),
    };
    let ok = Settlement {
        state: TaskState::Succeeded,
        message: None,
        resource: Some(resource),
    };
    let settled = settle(&store, &[(task.id, ok)])
        .await
        .pop()
        .expect("first settle wins");
    assert_eq!(settled.resource, Some(resource));
    assert!(settled.finished_at.is_some());
    let again = Settlement {
        state: TaskState::Failed,
        message: Some("late".into()),
        resource: None,
    };
    assert!(
        settle(&store, &[(task.id, again)]).await.is_empty(),
        "a settled task stays settled"
    );
    assert_eq!(
        store.task(task.id).await.unwrap().unwrap().state,
        TaskState::Succeeded
    );

    // An intent EM never took can be dropped; one EM took cannot.
    let unsent = insert(&store).await;
    store.delete_task(unsent.id).await.unwrap();
    assert!(store.task(unsent.id).await.unwrap().is_none());
    store.delete_task(task.id).await.unwrap();
    assert!(store.task(task.id).await.unwrap().is_some());

    let all = store
        .list_tasks(&TaskFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

async fn orphans_are_leased_to_one_replica_at_a_time(db: Db) {
    let store = store(db).await;
    let dead = ReplicaId::new();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let t = insert(&store).await;
        attach(&store, t.id, "task-1", "gone-session", dead).await;
        ids.push(t.id);
    }
    let rules = lost_now(Duration::from_secs(60));
    let sessions = store.sessions().await.unwrap();
    let (a, b) = tokio::join!(
        store.claim_orphans(ReplicaId::new(), &rules, &sessions, 4),
        store.claim_orphans(ReplicaId::new(), &rules, &sessions, 4),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut claimed: Vec<TaskId> = a.iter().chain(b.iter()).map(|t| t.id).collect();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), a.len() + b.len(), "no task leased twice");
    assert_eq!(claimed.len(), 6, "all orphans leased between the two");
    assert!(
        store
            .claim_orphans(
                ReplicaId::new(),
                &rules,
                &store.sessions().await.unwrap(),
                10
            )
            .await
            .unwrap()
            .is_empty(),
        "leases hold"
    );

    // A lease that has run out frees the task for the next replica.
    let other = insert(&store).await;
    attach(&store, other.id, "task-2", "gone-session", dead).await;
    let mut lapsed = lost_now(Duration::ZERO);
    lapsed.lease_until = lapsed.now - Duration::from_millis(1);
    let brief = store
        .claim_orphans(
            ReplicaId::new(),
            &lapsed,
            &store.sessions().await.unwrap(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        brief.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![other.id]
    );
    let next = store
        .claim_orphans(
            ReplicaId::new(),
            &lost_now(Duration::from_secs(60)),
            &store.sessions().await.unwrap(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![other.id]
    );
}

async fn sessions_heartbeat_and_get_lost(db: Db) {
    let store = store(db).await;
    let (r1, r2) = (ReplicaId::new(), ReplicaId::new());
    let t = insert(&store).await;
    attach(&store, t.id, "task-1", "s1", r1).await;
    store
        .heartbeat_sessions(r1, &[(0, "s1".into())], now())
        .await
        .unwrap();
    // Heartbeats within the last minute count; nothing is unsent.
    let rules = |now: Timestamp| OrphanRules {
        now,
        lease_until: now + Duration::from_secs(1),
        unsent: UnsentLook::All {
            before: Timestamp::from_millis(0),
        },
        heartbeat_after: now - Duration::from_secs(60),
    };
    assert!(
        store
            .claim_orphans(r2, &rules(now()), &store.sessions().await.unwrap(), 10)
            .await
            .unwrap()
            .is_empty(),
        "a live session's task is no orphan"
    );
    // The slot logged on again: s1 is lost, its task is an orphan at once.
    store
        .heartbeat_sessions(r1, &[(0, "s2".into())], now())
        .await
        .unwrap();
    let orphans = store
        .claim_orphans(r2, &rules(now()), &store.sessions().await.unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(orphans.len(), 1);
    store.release_sessions(r1, now()).await.unwrap();
    // s1 still has a running task: forgetting it would hide that orphan for ever.
    assert_eq!(
        store
            .prune_sessions(now() + Duration::from_millis(1))
            .await
            .unwrap(),
        1
    );
    settle(
        &store,
        &[(
            t.id,
            Settlement {
                state: TaskState::Failed,
                message: None,
                resource: None,
            },
        )],
    )
    .await;
    assert_eq!(
        store
            .prune_sessions(now() + Duration::from_millis(1))
            .await
            .unwrap(),
        1,
        "once its task is settled"
    );
}

async fn api_keys_are_stored_as_hashes_and_revoked(db: Db) {
    let store = store(db).await;
    let issued = em_gateway::access::issue(
        &store,
        "portal",
        Scope::Write,
        Owner::default(),
        None,
        now(),
    )
    .await
    .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&issued.token).to_string();
    assert!(token.starts_with("emgw_") && token.len() > 40);
    assert!(token.starts_with(&issued.record.prefix));
    let found = store
        .api_key_by_hash(&em_gateway::access::hash(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.scope, Scope::Write);
    let listed = store.list_api_keys(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        !format!("{listed:?}").contains(&token),
        "a list never holds the key"
    );
    let auth = em_gateway::access::Authenticator::new(store.clone(), Clock::system());
    assert!(auth.check(&token.clone().into()).await.unwrap().is_some());
    assert!(auth.revoke(issued.record.id).await.unwrap());
    assert!(
        auth.check(&token.clone().into()).await.unwrap().is_none(),
        "revoked at once"
    );
    assert!(!store.revoke_api_key(issued.record.id, now()).await.unwrap());
    let expired = em_gateway::access::issue(
        &store,
        "old",
        Scope::Read,
        Owner::default(),
        Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        now(),
    )
    .await
    .unwrap();
    let expired_token = secrecy::ExposeSecret::expose_secret(&expired.token).to_string();
    assert!(auth.check(&expired_token.into()).await.unwrap().is_none());
}

async fn migrations_run_twice_without_harm(db: Db) {
    let store = store(db).await;
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

#[tokio::test]
async fn idempotency_answers_are_purged_after_a_day() {
    use em_gateway::store::{KEEP, StoredAnswer};
    let store = store(Db::Sqlite).await;
    let key = IdempotencyKey {
        api_key_id: ApiKeyId::new(),
        key: "a".into(),
    };
    let stale = Duration::from_secs(1);
    assert_eq!(
        store
            .claim_idempotency(&key, &["f".to_string()], now(), stale)
            .await
            .unwrap(),
        Claim::Fresh
    );
    let answer = StoredAnswer {
        status: 202,
        body: "{}".into(),
        location: None,
    };
    store.finish_idempotency(&key, &answer).await.unwrap();
    assert_eq!(
        store
            .claim_idempotency(&key, &["f".to_string()], now(), stale)
            .await
            .unwrap(),
        Claim::Replay(answer)
    );
    assert_eq!(store.purge_idempotency(now()).await.unwrap(), 0);
    assert_eq!(
        store
            .purge_idempotency(now() + KEEP + Duration::from_millis(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .claim_idempotency(&key, &["other".to_string()], now(), stale)
            .await
            .unwrap(),
        Claim::Fresh,
        "a purged key is new again"
    );
}

async fn a_batch_settles_only_what_is_still_running(db: Db) {
    let store = store(db).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(insert(&store).await.id);
    }
    let done = Settlement {
        state: TaskState::Succeeded,
        message: None,
        resource: None,
    };
    settle(&store, &[(ids[0], done.clone())])
        .await
        .pop()
        .unwrap();
    let failed = Settlement {
        state: TaskState::Failed,
        message: Some("host is unreachable".into()),
        resource: None,
    };
    let resource = Resource {
        type_: ResourceType::CloudGateway,
        id: uuid::Uuid::new_v4(),
    };
    let created = Settlement {
        state: TaskState::Succeeded,
        message: None,
        resource: Some(resource),
    };
    // Newest first, each with its own outcome.
    let mut batch: Vec<(TaskId, Settlement)> = ids.iter().map(|id| (*id, done.clone())).collect();
    batch.reverse();
    batch[1].1 = failed.clone();
    batch[2].1 = created.clone();
    let settled = settle(&store, &batch).await;
    assert_eq!(
        settled.len(),
        4,
        "the one settled before is not settled again"
    );
    let order: Vec<TaskId> = settled.iter().map(|t| t.id).collect();
    assert_eq!(
        order,
        [ids[4], ids[3], ids[2], ids[1]],
        "in the order given"
    );
    assert_eq!(settled[1].state, TaskState::Failed);
    assert_eq!(settled[1].message.as_deref(), Some("host is unreachable"));
    assert_eq!(settled[2].resource, Some(resource));
    assert_eq!(settled[0].state, TaskState::Succeeded);
    assert!(settled.iter().all(|t| t.finished_at.is_some()));
    assert!(settle(&store, &batch).await.is_empty());
    assert_eq!(store.count_running().await.unwrap(), 0);
}

async fn attempts_are_recorded_in_batches_by_the_lease_holder_only(db: Db) {
    let store = store(db).await;
    let mut hooks = Vec::new();
    for name in ["ok", "gone", "retry"] {
        let hook = NewWebhook {
            url: format!("https://{name}.example/hook"),
            event_types: Vec::new(),
            description: None,
            secret: "whsec_c2VjcmV0".into(),
            api_key_id: None,
            owner: Owner::default(),
        };
        hooks.push(
            store
                .insert_webhook(&hook, 50, now())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let task = insert(&store).await;
    let done = Settlement {
        state: TaskState::Succeeded,
        message: None,
        resource: None,
    };
    settle(&store, &[(task.id, done)]).await.pop().unwrap();
    let (r1, r2) = (ReplicaId::new(), ReplicaId::new());
    let lease = Duration::from_secs(60);
    let jobs = store.claim_deliveries(r1, now(), lease, 10).await.unwrap();
    assert_eq!(jobs.len(), 3, "one delivery per subscription");
    let attempt = |job: &em_gateway::store::DeliveryJob, status: u16, result: AttemptResult| {
        RecordedAttempt {
            delivery_id: job.delivery_id,
            webhook_id: job.webhook_id,
            attempt: AttemptRecord {
                attempt: 1,
                status_code: Some(status),
                error: (status >= 300).then(|| format!("HTTP {status}")),
                duration_ms: 3,
                started_at: now().to_datetime(),
                finished_at: now().to_datetime(),
            },
            result,
        }
    };
    let by_hook = |i: usize| {
        jobs.iter()
            .find(|j| j.webhook_id == hooks[i].id)
            .expect("a job per hook")
    };
    let batch = vec![
        attempt(by_hook(0), 200, AttemptResult::Delivered),
        attempt(by_hook(1), 410, AttemptResult::Gone),
        attempt(
            by_hook(2),
            503,
            AttemptResult::RetryAt(now() + Duration::from_secs(60)),
        ),
    ];
    assert_eq!(
        store
            .record_attempts(r2, &batch, now())
            .await
            .unwrap()
            .recorded,
        0,
        "a replica without the leases records nothing"
    );
    assert_eq!(
        store
            .record_attempts(r1, &batch, now())
            .await
            .unwrap()
            .recorded,
        3
    );
    assert_eq!(
        store
            .record_attempts(r1, &batch, now())
            .await
            .unwrap()
            .recorded,
        0,
        "recording gives the leases up"
    );
    let expect = [
        (DeliveryState::Delivered, 200),
        (DeliveryState::Failed, 410),
        (DeliveryState::Pending, 503),
    ];
    for (hook, (state, status)) in hooks.iter().zip(expect) {
        let log = store.list_deliveries(hook.id, None, 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].state, state, "{}", hook.url);
        assert_eq!(log[0].attempts.len(), 1, "one attempt logged, not two");
        assert_eq!(log[0].attempts[0].status_code, Some(status));
    }
    let gone = store.webhook(hooks[1].id).await.unwrap().unwrap();
    assert!(gone.disabled_at.is_some(), "410 disables the subscription");
    assert!(
        store
            .webhook(hooks[0].id)
            .await
            .unwrap()
            .unwrap()
            .disabled_at
            .is_none(),
        "only that one"
    );
    assert!(
        store
            .claim_deliveries(r1, now(), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "the retry is not due yet and the others are over"
    );
}

async fn intents_and_em_task_ids_are_written_in_batches(db: Db) {
    let store = store(db).await;
    // One key in most of the batch: their links take two statements (100 a statement).
    let api_key_id = ApiKeyId::new();
    let key_of = |i: usize| IdempotencyKey {
        api_key_id,
        key: format!("order-{i}"),
    };
    let keyed = |i: usize| (i % 10 != 3).then(|| key_of(i));
    let ids = write_keyed_batch(&store, 150, keyed, "150 in two statements").await;
    let stale = Duration::from_secs(60);
    let key = key_of(120);

    let attach = |id: TaskId, n: usize| EmAttach {
        id,
        em_task_id: format!("task-{n}"),
        em_session_id: format!("session-{}", n % 2),
        at: now(),
    };
    let mut attaches: Vec<EmAttach> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| attach(*id, n))
        .collect();
    attaches.insert(1, attach(TaskId::new(), 999));
    let r1 = ReplicaId::new();
    let mut tx = store.begin().await.unwrap();
    let attached = tx.attach_em_tasks(r1, &attaches).await.unwrap();
    tx.commit().await.unwrap();
    // The HTTP layer keeps the 202 under the key before it sends it.
    let with_key = attached[121].as_ref().unwrap();
    store
        .finish_idempotency(&key, &em_gateway::tasks::answer::accepted(with_key))
        .await
        .unwrap();
    assert_eq!(attached.len(), 151);
    assert!(attached[1].is_none(), "no such task");
    for (a, t) in attaches.iter().zip(&attached).filter(|(_, t)| t.is_some()) {
        let t = t.as_ref().unwrap();
        assert_eq!(t.id, a.id);
        assert_eq!(t.em_task_id.as_deref(), Some(a.em_task_id.as_str()));
        assert_eq!(t.em_session_id.as_deref(), Some(a.em_session_id.as_str()));
        assert_eq!(t.em_owner, Some(r1));
    }
    match store
        .claim_idempotency(&key, &["fp".to_string()], now(), stale)
        .await
        .unwrap()
    {
        Claim::Replay(answer) => {
            assert_eq!(answer.status, 202);
            assert!(
                answer.body.contains(&ids[120].to_string()),
                "{}",
                answer.body
            );
            assert!(answer.body.contains("task-120"), "{}", answer.body);
        }
        other => panic!("expected the stored answer, got {other:?}"),
    }
    assert_eq!(store.running_tasks_of(r1).await.unwrap().len(), 150);
}

/// The usual batch is one statement (on Postgres its links too): all keyed and prepared (64,
/// written twice so the second runs the prepared statement), and a few keyed among others.
async fn keyed_intents_of_one_statement_are_linked_whatever_the_mix(db: Db) {
    let store = store(db).await;
    let api_key_id = ApiKeyId::new();
    for (round, (size, keyed)) in [(64, 64), (64, 64), (10, 3), (1, 1)]
        .into_iter()
        .enumerate()
    {
        // The keyed ones spread through the batch: first, last, between.
        let key_of = |i: usize| {
            (keyed == size || [0, size / 2, size - 1][..keyed].contains(&i)).then(|| {
                IdempotencyKey {
                    api_key_id,
                    key: format!("round-{round}-{i}"),
                }
            })
        };
        write_keyed_batch(&store, size, key_of, &format!("round {round}")).await;
    }
}

/// Claims the keys `key_of` gives some of `size` intents, writes the intents as one batch,
/// and checks that the answers come in the order given and that each key names its own task.
async fn write_keyed_batch(
    store: &Store,
    size: usize,
    key_of: impl Fn(usize) -> Option<IdempotencyKey>,
    what: &str,
) -> Vec<TaskId> {
    let (stale, fingerprints) = (Duration::from_secs(60), ["fp".to_string()]);
    let batch: Vec<(NewTask, Option<IdempotencyKey>)> =
        (0..size).map(|i| (new_task(), key_of(i))).collect();
    for key in batch.iter().filter_map(|(_, key)| key.as_ref()) {
        let claim = store.claim_idempotency(key, &fingerprints, now(), stale);
        assert_eq!(claim.await.unwrap(), Claim::Fresh, "{what}");
    }
    let inserted = store.insert_tasks(&batch, now()).await.unwrap();
    let ids: Vec<TaskId> = inserted.iter().map(|t| t.id).collect();
    let given: Vec<TaskId> = batch.iter().map(|(t, _)| t.id).collect();
    assert_eq!(ids, given, "{what}: answers in the order given");
    assert!(inserted.iter().all(|t| t.state == TaskState::Running));
    for (i, (_, key)) in batch.iter().enumerate() {
        let Some(key) = key else { continue };
        match store
            .claim_idempotency(key, &fingerprints, now(), stale)
            .await
            .unwrap()
        {
            Claim::InProgress { task_id, .. } => {
                assert_eq!(task_id, Some(ids[i]), "{what}: key {i} names its own task")
            }
            other => panic!("{what}: expected key {i} in progress, got {other:?}"),
        }
    }
    ids
}

/// The attach without Idempotency-Keys or new sessions: one statement, on Postgres in a
/// transaction of its own that does not wait for the disk.
async fn em_task_ids_alone_are_recorded_in_one_statement(db: Db) {
    let store = store(db).await;
    let batch: Vec<(NewTask, Option<IdempotencyKey>)> =
        (0..3).map(|_| (new_task(), None)).collect();
    let ids: Vec<TaskId> = store
        .insert_tasks(&batch, now())
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    // Each at its own time: EM accepted them one by one.
    let base = now();
    let at = |n: usize| base + Duration::from_millis(n as u64 * 7);
    let attach = |id: TaskId, n: usize| EmAttach {
        id,
        em_task_id: format!("task-{n}"),
        em_session_id: "session-1".into(),
        at: at(n),
    };
    let r1 = ReplicaId::new();
    let attached = store
        .attach_em_tasks(
            r1,
            &[
                attach(ids[2], 2),
                attach(TaskId::new(), 9),
                attach(ids[0], 0),
            ],
        )
        .await
        .unwrap();
    assert_eq!(attached.len(), 3, "an answer for each, in the order given");
    assert_eq!(attached[0].as_ref().map(|t| t.id), Some(ids[2]));
    assert!(attached[1].is_none(), "no such task");
    assert_eq!(attached[2].as_ref().map(|t| t.id), Some(ids[0]));
    for (id, n) in [(ids[0], 0), (ids[2], 2)] {
        let t = store.task(id).await.unwrap().expect("recorded");
        assert_eq!(t.em_task_id, Some(format!("task-{n}")));
        assert_eq!(t.em_session_id.as_deref(), Some("session-1"));
        assert_eq!(t.em_owner, Some(r1));
        assert_eq!(t.updated_at, at(n).to_datetime(), "its own time");
    }
    let untouched = store.task(ids[1]).await.unwrap().expect("recorded");
    assert!(untouched.em_task_id.is_none());
}

/// EM's task ids written behind the 202: the answer and this replica's reads show them at
/// once, the database once they are written. Until then the poller does not follow the task and
/// its intent stays evidence for the look for intents EM's answer never came for; a write that
/// fails leaves it so.
async fn em_task_ids_written_behind_their_answers(db: Db) {
    let url = fresh_database(db).await;
    let store = Store::connect(&url)
        .await
        .unwrap()
        .sealing_with(test_keyring());
    store.migrate().await.unwrap();
    // As in the service: written behind on the background pool.
    let background = Store::connect_for(&url, PoolFor::Background).await.unwrap();
    let owner = ReplicaId::new();
    let own = OwnTasks::new(store.clone(), background.clone(), owner);
    let attacher = own.attacher.clone();
    let clock = Clock::system();
    let base = now();
    let mut answers = Vec::new();
    let answer = |task: TaskRecord, n: u64| {
        let mut pending = own.unanswered.entering(task.id, &clock);
        pending.written_at(task.created_at.into());
        let attach = EmAttach {
            id: task.id,
            em_task_id: format!("task-{n}"),
            em_session_id: "session-1".into(),
            at: base + Duration::from_millis(n * 7),
        };
        attacher.write_behind(task, attach, pending)
    };
    for n in 0..3 {
        let task = insert(&store).await;
        answers.push(answer(task, n));
    }
    let em_ids = |t: &TaskRecord| {
        (
            t.em_task_id.clone(),
            t.em_session_id.clone(),
            t.em_owner,
            t.updated_at,
        )
    };
    for (n, a) in answers.iter().enumerate() {
        assert_eq!(
            em_ids(a),
            (
                Some(format!("task-{n}")),
                Some("session-1".into()),
                Some(owner),
                (base + Duration::from_millis(n as u64 * 7)).to_datetime()
            ),
            "the answer shows EM's ids"
        );
        let mut row = store.task(a.id).await.unwrap().unwrap();
        assert_eq!(row.em_task_id, None, "not written yet");
        assert_eq!(attacher.as_answered(&mut row), Read::AsAnswered);
        assert_eq!(em_ids(&row), em_ids(a), "read as answered");
    }
    assert_eq!(own.in_flight.len(), 0, "followed only once written");
    assert_eq!(own.unanswered.len(), 3, "evidence until written");

    attacher.write_behind_now().await.unwrap();
    for a in &answers {
        let row = store.task(a.id).await.unwrap().unwrap();
        assert_eq!(em_ids(&row), em_ids(a), "written as answered");
    }
    assert_eq!(own.in_flight.len(), 3);
    assert!(own.unanswered.is_empty());

    // A write that fails (the table is away) leaves the records waiting and their evidence.
    let retried = answer(insert(&store).await, 3);
    let settled = answer(insert(&store).await, 4);
    let mut admin = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("ALTER TABLE tasks RENAME TO tasks_away")
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(attacher.write_behind_now().await.is_err());
    sqlx::raw_sql("ALTER TABLE tasks_away RENAME TO tasks")
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        own.unanswered.len(),
        2,
        "a failed write leaves its evidence"
    );
    assert_eq!(own.in_flight.len(), 3);
    let mut read = store.task(retried.id).await.unwrap().unwrap();
    assert_eq!(read.em_task_id, None);
    assert_eq!(attacher.as_answered(&mut read), Read::AsAnswered);
    assert_eq!(
        em_ids(&read),
        em_ids(&retried),
        "still waiting, read as answered"
    );

    // Meanwhile one is settled (as the poller's look for intents EM's answer never came for
    // would): the next try writes the other and leaves the settled one as it ended.
    let mut tx = store.begin().await.unwrap();
    let ended = Settlement {
        state: TaskState::Failed,
        message: Some("lost".into()),
        resource: None,
    };
    tx.settle_tasks(&[(settled.id, ended)], now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let before = store.task(settled.id).await.unwrap().unwrap();
    attacher.write_behind_now().await.unwrap();
    let row = store.task(retried.id).await.unwrap().unwrap();
    assert_eq!(em_ids(&row), em_ids(&retried), "written on the next try");
    let row = store.task(settled.id).await.unwrap().unwrap();
    assert_eq!(row.state, TaskState::Failed);
    assert_eq!(
        em_ids(&row),
        em_ids(&before),
        "a settled task is left as it ended"
    );
    assert_eq!(own.in_flight.len(), 4, "the settled one is not followed");
    assert!(own.unanswered.is_empty());
    let mut read = row.clone();
    assert_eq!(attacher.as_answered(&mut read), Read::AsAnswered);
    assert_eq!(
        em_ids(&read),
        em_ids(&before),
        "nothing waits for it any more"
    );
}

async fn intents_never_answered_are_looked_at_once_due_and_again_after_a_look(db: Db) {
    let store = store(db).await;
    let base = now();
    let ago = |s: u64| base - Duration::from_secs(s);
    let mut written = Vec::new();
    for at in [ago(10), ago(5), ago(1)] {
        let task = store
            .insert_tasks(&[(new_task(), None)], at)
            .await
            .unwrap()
            .pop()
            .unwrap();
        written.push(task.id);
    }
    let [old, due, fresh] = written[..] else {
        unreachable!()
    };
    let (replica, other) = (ReplicaId::new(), ReplicaId::new());
    let claim = |by: ReplicaId, unsent: UnsentLook, now: Timestamp| {
        let rules = OrphanRules {
            now,
            lease_until: now + Duration::from_millis(1),
            unsent,
            heartbeat_after: ago(60),
        };
        let store = store.clone();
        async move {
            let mut ids: Vec<TaskId> = store
                .claim_orphans(by, &rules, &store.sessions().await.unwrap(), 10)
                .await
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect();
            ids.sort();
            ids
        }
    };
    // A look since the last one sees only the intents written in between.
    let window = UnsentLook::Since {
        from: ago(7),
        before: ago(2),
    };
    assert_eq!(claim(replica, window, base).await, vec![due]);
    // Still not in EM's objects: let go, and looked at again by the next look, beside the
    // intents written since.
    store.unlease_orphans(replica, &[due], base).await.unwrap();
    let next = UnsentLook::Since {
        from: ago(2),
        before: base - Duration::from_millis(500),
    };
    let later = base + Duration::from_millis(10);
    assert_eq!(claim(replica, next, later).await, vec![due, fresh]);
    // While that lease holds, another replica's look passes them by.
    let after = UnsentLook::Since {
        from: base - Duration::from_millis(500),
        before: base,
    };
    assert!(claim(other, after, later).await.is_empty());
    // The replica stops and gives its leases up: the other's next look takes them at once.
    store.release_leases(replica).await.unwrap();
    assert_eq!(claim(other, after, later).await, vec![due, fresh]);
    // What no window covered is found by a look at all of them.
    let all = UnsentLook::All {
        before: base + Duration::from_secs(1),
    };
    assert_eq!(
        claim(replica, all, base + Duration::from_secs(1)).await,
        vec![old, due, fresh]
    );
}

/// Postgres only: the task reads' kept connections (`store::local`). Sequential reads on one
/// thread reuse one connection instead of opening one each; a read dropped while its statement
/// waits leaves its connection to a check that keeps it once Postgres has answered, so the next
/// read neither gets the answer meant for the first nor needs a new connection.
#[tokio::test(flavor = "current_thread")]
async fn kept_connections_are_reused_and_one_left_mid_statement_is_recovered() {
    let (database, store, task, mut admin) = postgres_store_with_a_task().await;
    for _ in 0..20 {
        assert_eq!(
            store.task(task.id).await.unwrap().map(|t| t.id),
            Some(task.id)
        );
    }
    let first = task_readers(&mut admin).await;
    assert_eq!(
        first.len(),
        1,
        "20 reads in a row, one connection: {first:?}"
    );

    // A lock makes the next read wait in its statement; the caller gives up on it.
    let mut locker = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(300), store.task(task.id)).await;
    assert!(gave_up.is_err(), "the read waited for the lock");
    lock.rollback().await.unwrap();
    // The connection left mid-statement is neither closed nor used as it is: once Postgres has
    // answered the abandoned statement, a check keeps it, and later reads, each answered its
    // own question, run on it again.
    let abandoned = first[0];
    let other = insert(&store).await;
    let before = query_start(&database.url, abandoned).await;
    assert!(before.is_some(), "still open");
    eventually(
        "a read to run on the abandoned connection",
        Duration::from_secs(10),
        || {
            let (store, url, before) = (store.clone(), database.url.clone(), before.clone());
            async move {
                // Two at once: the one given back last serves one, the next one the other.
                let (a, b) = tokio::join!(store.task(other.id), store.task(task.id));
                assert_eq!(a.unwrap().map(|t| t.id), Some(other.id));
                assert_eq!(b.unwrap().map(|t| t.id), Some(task.id));
                let now = query_start(&url, abandoned).await;
                assert!(now.is_some(), "the abandoned connection was closed");
                (now != before).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        store.task(task.id).await.unwrap().map(|t| t.id),
        Some(task.id)
    );
    drop(store);
    drop(admin);
    drop(locker);
    database.drop().await.unwrap();
}

/// A task read (on Postgres through a typed connection, not `Any`) gives back every field as
/// the writes that returned it did (through `Any`); a row that does not parse is refused as
/// corrupt, and the connection that read it serves the next read.
async fn a_task_reads_back_whole_and_a_corrupt_one_is_refused(db: Db) {
    let url = fresh_database(db).await;
    let store = Store::connect(&url)
        .await
        .expect("connect")
        .sealing_with(test_keyring());
    store.migrate().await.expect("migrate");
    let task = NewTask {
        target_id: Some(uuid::Uuid::new_v4()),
        operation: Operation::UpdateCloudGateway,
        metadata: serde_json::from_str(r#"{"order": "42", "é": "ü"}"#).unwrap(),
        api_key_id: Some(ApiKeyId::new()),
        owner: Owner::parse("team-a").unwrap(),
        warnings: vec!["a warning, \"quoted\"".into()],
        ..new_task()
    };
    let inserted = store
        .insert_tasks(&[(task, None)], now())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        store.task(inserted.id).await.unwrap(),
        Some(inserted.clone())
    );
    attach(&store, inserted.id, "task-7", "session-b", ReplicaId::new())
        .await
        .unwrap();
    let ended = Settlement {
        state: TaskState::Failed,
        message: Some("EM said no".into()),
        resource: Some(Resource {
            type_: ResourceType::CloudGateway,
            id: uuid::Uuid::new_v4(),
        }),
    };
    let settled = settle(&store, &[(inserted.id, ended)]).await.pop().unwrap();
    assert!(settled.em_owner.is_some() && settled.finished_at.is_some());
    assert_eq!(store.task(settled.id).await.unwrap(), Some(settled.clone()));

    let corrupt = insert(&store).await;
    let sql = format!(
        "UPDATE tasks SET operation = 'launch_missiles' WHERE id = '{}'",
        corrupt.id
    );
    // Through `Any`, whose drivers the store installed.
    let mut admin = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .unwrap();
    for _ in 0..3 {
        match store.task(corrupt.id).await {
            Err(StoreError::Corrupt(what)) => assert!(what.contains("launch_missiles"), "{what}"),
            other => panic!("a corrupt row read back as {other:?}"),
        }
        assert_eq!(store.task(settled.id).await.unwrap(), Some(settled.clone()));
    }
}

/// Postgres only: a kept read connection whose backend died while it sat idle (a restart, an
/// administrator) fails the next read on it, which is tried again on a new connection: the
/// caller never sees it.
#[tokio::test(flavor = "current_thread")]
async fn a_read_on_a_kept_connection_that_died_is_tried_again_on_a_new_one() {
    let (database, store, task, mut admin) = postgres_store_with_a_task().await;
    for round in 0..3 {
        assert_eq!(
            store.task(task.id).await.unwrap().map(|t| t.id),
            Some(task.id)
        );
        let pids = task_readers(&mut admin).await;
        assert_eq!(pids.len(), 1, "round {round}: one reader: {pids:?}");
        let dead = pids[0];
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(dead)
            .execute(&mut admin)
            .await
            .unwrap();
        eventually("the backend to be gone", Duration::from_secs(10), || {
            let url = database.url.clone();
            async move { query_start(&url, dead).await.is_none().then_some(()) }
        })
        .await;
        // Idle well under the second after which a kept connection is checked first: the read
        // meets the dead connection itself.
        assert_eq!(
            store.task(task.id).await.unwrap().map(|t| t.id),
            Some(task.id),
            "round {round}"
        );
        let after = task_readers(&mut admin).await;
        assert!(!after.contains(&dead), "round {round}: {after:?}");
    }
    drop(store);
    drop(admin);
    database.drop().await.unwrap();
}

/// A fresh Postgres database with the store migrated, one task in it, and a connection of
/// its own to look at the store's backends.
async fn postgres_store_with_a_task() -> (PostgresDatabase, Store, TaskRecord, sqlx::PgConnection) {
    let database = PostgresDatabase::create("emgw_t_")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = Store::connect(&database.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let task = insert(&store).await;
    let admin = sqlx::PgConnection::connect(&database.url).await.unwrap();
    (database, store, task, admin)
}

/// The backends whose last statement was a task read.
async fn task_readers(admin: &mut sqlx::PgConnection) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND query LIKE 'SELECT id, operation, state%'",
    )
    .fetch_all(admin)
    .await
    .unwrap()
}

/// When the backend `pid` started its last statement; `None` once it is gone.
async fn query_start(url: &str, pid: i32) -> Option<String> {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT query_start::text FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_optional(&mut admin)
        .await
        .unwrap()
}

/// Deleting a subscription cascades to its deliveries and from each to its attempts. Without an
/// index on the attempts' delivery each delivery deleted scanned every attempt: 4.8 s for one of
/// 412 deliveries among 30,776 attempts on SQLite, its one write lock held all along (a
/// schemathesis run's `DELETE /v1/webhooks/{id}` timed out after 10 s on it).
async fn a_deleted_subscriptions_attempts_are_found_through_an_index(db: Db) {
    use sqlx::{Connection, Row};
    let url = fresh_database(db).await;
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let lookup = "SELECT 1 FROM webhook_attempts WHERE delivery_id = 'd'";
    let plan: Vec<String> = match db {
        Db::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {lookup}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect()
        }
        Db::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            // An empty table is scanned whatever its indexes: ask what else there is.
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {lookup}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect()
        }
    };
    assert!(
        plan.iter()
            .any(|l| l.contains("webhook_attempts_by_delivery")),
        "{plan:?}"
    );
}
