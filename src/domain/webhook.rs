//! Webhooks as consumers see them: the events, the envelope they arrive in, and how a delivery
//! stands.

use serde::Serialize;
use utoipa::ToSchema;

use super::{TaskState, TaskView, string_enum};

string_enum!(
    /// What happened: a task settled one way or the other.
    EventType {
        TaskSucceeded = "task.succeeded",
        TaskFailed = "task.failed",
    }
);

string_enum!(
    /// `pending` until delivered or given up (`failed`).
    DeliveryState {
        Pending = "pending",
        Delivered = "delivered",
        Failed = "failed",
    }
);

impl EventType {
    /// The event a task's settling fires; none while it runs.
    pub fn of(state: TaskState) -> Option<Self> {
        match state {
            TaskState::Succeeded => Some(EventType::TaskSucceeded),
            TaskState::Failed => Some(EventType::TaskFailed),
            TaskState::Running => None,
        }
    }
}

/// The body of every webhook request.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"type": "task.succeeded", "timestamp": "2026-11-24T10:00:02.000Z",
    "data": {"id": "0193a5c4-8f2e-7cc1-9d7e-3b1f3c2a9e10", "operation": "create_cloud_gateway",
        "state": "succeeded", "em_task_id": "task-7", "message": null,
        "resource": {"type": "cloud_gateway", "id": "917be225-2ba4-4c5f-a4ba-7e0a6c8d1f20",
            "uid": "urn:veeam:CloudGateway:917be225-2ba4-4c5f-a4ba-7e0a6c8d1f20"},
        "metadata": {"order": "42"}, "owner": "default", "warnings": [], "created_at": "2026-11-24T10:00:00.000Z",
        "updated_at": "2026-11-24T10:00:02.000Z", "finished_at": "2026-11-24T10:00:02.000Z"}}))]
pub struct TaskEvent<'a> {
    #[serde(rename = "type")]
    pub type_: EventType,
    /// When the event was queued (RFC 3339, UTC, milliseconds).
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: String,
    /// The task, exactly as `GET /v1/tasks/{id}` shows it.
    pub data: &'a TaskView,
}
