//! `GET /v1/tasks/{id}` and `GET /v1/tasks`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{ApiError, Problems};
use super::views::Query;
use super::{AppState, caller};
use crate::domain::{Operation, Scope, TaskId, TaskState, TaskView};
use crate::store::{TaskFilter, TaskRecord};

/// A write that becomes an EM task, for the API key `key`: run at most once per
/// Idempotency-Key, its body parsed into a command and the caller's metadata, and answered 202
/// with the task.
pub async fn as_task<C, P, F, Fut>(
    req: &HttpRequest,
    state: &AppState,
    key: &crate::store::ApiKeyRecord,
    body: &[u8],
    parse: P,
    submit: F,
) -> Result<HttpResponse, ApiError>
where
    P: FnOnce(&[u8]) -> Result<(C, crate::domain::Metadata), ApiError>,
    F: FnOnce(C, crate::operations::Requester) -> Fut,
    Fut: std::future::Future<Output = Result<TaskRecord, crate::operations::SubmitError>>,
{
    super::idempotency::once(req, state, &key.id, body, |idempotency| async move {
        let (command, metadata) = parse(body)?;
        let by = crate::operations::Requester {
            api_key_id: Some(key.id.clone()),
            metadata,
            idempotency,
        };
        Ok(accepted(&submit(command, by).await?))
    })
    .await
}

/// No body: a delete's command is its path.
pub fn no_body(_: &[u8]) -> Result<((), crate::domain::Metadata), ApiError> {
    Ok(((), crate::domain::Metadata::default()))
}

/// 202 Accepted with `Location` and the task: the answer to every write.
pub fn accepted(task: &TaskRecord) -> HttpResponse {
    answer(&crate::store::accepted_answer(task))
}

/// A stored answer, as sent the first time.
pub fn answer(stored: &crate::store::StoredAnswer) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(stored.status)
        .unwrap_or(actix_web::http::StatusCode::ACCEPTED);
    let mut resp = HttpResponse::build(status);
    if let Some(location) = &stored.location {
        resp.insert_header(("Location", location.clone()));
    }
    let content_type = if status.is_client_error() || status.is_server_error() {
        "application/problem+json"
    } else {
        "application/json"
    };
    resp.content_type(content_type).body(stored.body.clone())
}

/// A page of tasks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Reads one task.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    operation_id = "getTask",
    params(("id" = Uuid, Path, description = "The task id")),
    responses(
        (status = 200, body = TaskView, description = "The task"),
        Problems::<404>,
    ))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let not_found = || ApiError::NotFound(format!("no task {id}"));
    let task_id = TaskId::parse(&id).ok_or_else(not_found)?;
    let task = state.store.task(task_id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(task.view()))
}

/// Lists tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks",
    operation_id = "listTasks",
    params(
        ("state" = Option<TaskState>, Query, description = "Only tasks in this state"),
        ("operation" = Option<Operation>, Query, description = "Only tasks of this operation"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<Uuid>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = TaskPage, description = "One page, newest first"),
        Problems::<400>,
    ))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let mut q = Query::of(&req);
    let state_filter = q.take("state", |v| {
        TaskState::parse(v).ok_or_else(|| "must be running, succeeded or failed".to_string())
    });
    let operation = q.take("operation", |v| {
        Operation::parse(v).ok_or_else(|| "is not a known operation".to_string())
    });
    let limit = q.limit(50, 500);
    let before = q.cursor().map(TaskId::from_uuid);
    q.finish()?;
    // One more than asked tells whether another page exists.
    let filter = TaskFilter {
        state: state_filter,
        operation,
        before,
        limit: u32::try_from(limit + 1).unwrap_or(u32::MAX),
    };
    let mut tasks = state.store.list_tasks(&filter).await?;
    let more = tasks.len() > limit;
    tasks.truncate(limit);
    let next_cursor = if more {
        tasks.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(TaskPage {
        items: tasks.iter().map(|t| t.view()).collect(),
        next_cursor,
    }))
}
