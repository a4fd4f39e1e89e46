//! What a task becomes for the outside: its view (in the API and in webhooks), the 202 every
//! write answers with, and the event its settling fires. Built here, so that the store only
//! keeps the bytes.

use crate::clock::Timestamp;
use crate::domain::{EventId, EventType, ResourceView, TaskEvent, TaskView};
use crate::store::{NewEvent, StoredAnswer, TaskRecord};

/// The task as callers see it, in the API and in webhooks.
pub fn view(task: &TaskRecord) -> TaskView {
    TaskView {
        id: task.id.uuid(),
        operation: task.operation,
        state: task.state,
        em_task_id: task.em_task_id.clone(),
        message: task.message.clone(),
        resource: task.resource.map(|r| ResourceView {
            type_: r.type_,
            id: r.id,
            uid: r.uid(),
        }),
        metadata: task.metadata.as_map().clone(),
        owner: task.owner.clone(),
        warnings: task.warnings.clone(),
        created_at: task.created_at,
        updated_at: task.updated_at,
        finished_at: task.finished_at,
    }
}

/// Where a task is followed.
pub fn location(task: &TaskRecord) -> String {
    format!("/v1/tasks/{}", task.id)
}

/// 202 Accepted, `Location` and the task: the answer to every write that becomes a task, and
/// what its Idempotency-Key keeps.
pub fn accepted(task: &TaskRecord) -> StoredAnswer {
    StoredAnswer {
        status: 202,
        body: serde_json::to_string(&view(task)).unwrap_or_default(),
        location: Some(location(task)),
    }
}

/// The webhook event a settled task fires (none while it runs), queued at `now`.
pub fn event(task: &TaskRecord, now: Timestamp) -> Option<NewEvent> {
    let type_ = EventType::of(task.state)?;
    let data = view(task);
    let envelope = TaskEvent {
        type_,
        timestamp: now
            .to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        data: &data,
    };
    Some(NewEvent {
        id: EventId::new(),
        type_,
        task_id: task.id,
        owner: task.owner.clone(),
        payload: serde_json::to_string(&envelope).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Metadata, Operation, Owner, TaskId, TaskState};

    fn task(state: TaskState) -> TaskRecord {
        let at = Timestamp::from_millis(1_795_950_000_000).to_datetime();
        TaskRecord {
            id: TaskId::new(),
            operation: Operation::CreateCloudGateway,
            state,
            target_id: None,
            request: "{}".into(),
            metadata: Metadata::default(),
            em_task_id: Some("task-7".into()),
            em_session_id: None,
            em_owner: None,
            resource: None,
            message: None,
            api_key_id: None,
            owner: Owner::default(),
            warnings: Vec::new(),
            created_at: at,
            updated_at: at,
            finished_at: None,
        }
    }

    #[test]
    fn a_settled_task_fires_its_event_with_the_task_as_the_api_shows_it() {
        let now = Timestamp::from_millis(1_795_950_002_000);
        assert!(event(&task(TaskState::Running), now).is_none());
        let succeeded = task(TaskState::Succeeded);
        let event = event(&succeeded, now).unwrap();
        assert_eq!(event.type_, EventType::TaskSucceeded);
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload["type"], "task.succeeded");
        assert_eq!(payload["timestamp"], "2026-11-29T11:00:02.000Z");
        assert_eq!(
            payload["data"],
            serde_json::to_value(view(&succeeded)).unwrap()
        );
    }

    #[test]
    fn the_answer_to_a_write_is_202_with_the_task_and_where_to_follow_it() {
        let t = task(TaskState::Running);
        let answer = accepted(&t);
        assert_eq!(answer.status, 202);
        assert_eq!(answer.location, Some(format!("/v1/tasks/{}", t.id)));
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["em_task_id"], "task-7");
    }
}
