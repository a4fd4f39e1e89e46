//! `GET /v1/tasks/{id}` and `GET /v1/tasks`, and the path every write that becomes a task takes.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::extract::{Body, Reader, Request};
use super::idempotency::{once, respond};
use super::problem::{ApiError, Problems};
use super::views::Query;
use crate::domain::{Listing, Metadata, Operation, Owner, TaskId, TaskState, TaskView};
use crate::store::{ApiKeyRecord, TaskFilter};
use crate::tasks::Read;
use crate::tasks::{Command, Requester, answer};

/// A write that becomes an EM task: at most once per Idempotency-Key, its body parsed into a
/// command and the caller's metadata, submitted, and answered 202 with the task.
pub async fn submit<T, V>(
    req: &HttpRequest,
    state: &AppState,
    key: &ApiKeyRecord,
    body: Body<T>,
    command: impl FnOnce(V) -> Command,
) -> Result<HttpResponse, ApiError>
where
    T: Request<Value = (V, Metadata)>,
{
    submit_with(req, state, key, body, command, false).await
}

/// [`submit`], with `strict_capacity`: a quota beyond its repository's free space is refused
/// rather than sent on with a warning.
pub async fn submit_with<T, V>(
    req: &HttpRequest,
    state: &AppState,
    key: &ApiKeyRecord,
    body: Body<T>,
    command: impl FnOnce(V) -> Command,
    strict_capacity: bool,
) -> Result<HttpResponse, ApiError>
where
    T: Request<Value = (V, Metadata)>,
{
    let bytes = body.bytes()?;
    once(req, state, key.id, &bytes, |idempotency| async move {
        let (value, metadata) = body.parse()?;
        let by = requester(key, metadata, idempotency, strict_capacity);
        run(state, command(value), by).await
    })
    .await
}

/// The same for a write without a body (a delete: its command is its path).
pub async fn submit_without_body(
    req: &HttpRequest,
    state: &AppState,
    key: &ApiKeyRecord,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    once(req, state, key.id, b"", |idempotency| {
        let by = requester(key, Metadata::default(), idempotency, false);
        run(state, command, by)
    })
    .await
}

fn requester(
    key: &ApiKeyRecord,
    metadata: Metadata,
    idempotency: Option<crate::store::IdempotencyKey>,
    strict_capacity: bool,
) -> Requester {
    Requester {
        api_key_id: Some(key.id),
        owner: key.owner.clone(),
        metadata,
        idempotency,
        strict_capacity,
    }
}

async fn run(state: &AppState, command: Command, by: Requester) -> Result<HttpResponse, ApiError> {
    let task = state.submitter.submit(command, by).await?;
    Ok(respond(&answer::accepted(&task)))
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
    key: Reader,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound(format!("no task {id}"));
    let task_id = TaskId::parse(&id).ok_or_else(not_found)?;
    let read = || async {
        let task = state
            .store
            .task(task_id)
            .await?
            .filter(|t| key.visibility().sees(&t.owner))
            .ok_or_else(not_found)?;
        Ok::<_, ApiError>(task)
    };
    let mut task = read().await?;
    if state.submitter.as_answered(&mut task) == Read::Again {
        // EM's task id, written behind its 202 between the read and the look, shows now.
        task = read().await?;
    }
    Ok(HttpResponse::Ok().json(answer::view(&task)))
}

/// Lists tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks",
    operation_id = "listTasks",
    params(
        ("state" = Option<TaskState>, Query, description = "Only tasks in this state"),
        ("operation" = Option<Operation>, Query, description = "Only tasks of this operation"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<Uuid>, Query, description = "`next_cursor` of the previous page"),
        ("owner" = Option<Owner>, Query, description = "Only this owner's tasks (an admin key sees every owner's; any other key only its own)"),
    ),
    responses(
        (status = 200, body = TaskPage, description = "One page, newest first"),
        Problems::<400>,
    ))]
pub async fn list(
    key: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let state_filter = q.take("state", |v| {
        TaskState::parse(v).ok_or_else(|| "must be running, succeeded or failed".to_string())
    });
    let operation = q.take("operation", |v| {
        Operation::parse(v).ok_or_else(|| "is not a known operation".to_string())
    });
    let owner = q.take("owner", Owner::parse);
    let limit = q.limit(50, 500);
    let before = q.cursor().map(TaskId::from_uuid);
    q.finish()?;
    let listing = key.visibility().list(owner);
    if listing == Listing::Nothing {
        return Ok(HttpResponse::Ok().json(TaskPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    }
    // One more than asked tells whether another page exists.
    let filter = TaskFilter {
        state: state_filter,
        operation,
        owner: listing.owner().cloned(),
        before,
        limit: u32::try_from(limit + 1).unwrap_or(u32::MAX),
    };
    let mut tasks = state.store.list_tasks(&filter).await?;
    let more = tasks.len() > limit;
    tasks.truncate(limit);
    // A task whose record was written between the list's read and this look shows without
    // EM's task id: a list is a moment's view.
    for task in &mut tasks {
        let _ = state.submitter.as_answered(task);
    }
    let next_cursor = if more {
        tasks.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(TaskPage {
        items: tasks.iter().map(answer::view).collect(),
        next_cursor,
    }))
}
