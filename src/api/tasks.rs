//! `GET /v1/tasks/{id}` and `GET /v1/tasks`.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{ApiError, Problem};
use super::{AppState, caller};
use crate::domain::{FieldError, Operation, Scope, TaskId, TaskState, TaskView};
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

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Reads one task.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = Uuid, Path, description = "The task id")),
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
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
    params(
        ("state" = Option<TaskState>, Query, description = "Only tasks in this state"),
        ("operation" = Option<Operation>, Query, description = "Only tasks of this operation"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = TaskPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let mut filter = TaskFilter {
        limit: 50,
        ..TaskFilter::default()
    };
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "state" => match TaskState::parse(&v) {
                Some(s) => filter.state = Some(s),
                None => bad("state", "must be running, succeeded or failed"),
            },
            "operation" => match Operation::parse(&v) {
                Some(o) => filter.operation = Some(o),
                None => bad("operation", "is not a known operation"),
            },
            "limit" => match v.parse::<u32>() {
                Ok(n) if (1..=500).contains(&n) => filter.limit = n,
                _ => bad("limit", "must be a number from 1 to 500"),
            },
            "cursor" => match decode_cursor(&v) {
                Some(id) => filter.before = Some(id),
                None => bad("cursor", "is not a cursor this API gave out"),
            },
            other => bad(other, "is not a known query parameter"),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Malformed {
            detail: format!("{} query parameter(s) are invalid", errors.len()),
            errors,
        });
    }
    // One more than asked tells whether another page exists.
    let limit = filter.limit;
    filter.limit += 1;
    let mut tasks = state.store.list_tasks(&filter).await?;
    let more = tasks.len() > limit as usize;
    tasks.truncate(limit as usize);
    let next_cursor = if more {
        tasks.last().map(|t| encode_cursor(t.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(TaskPage {
        items: tasks.iter().map(|t| t.view()).collect(),
        next_cursor,
    }))
}

fn encode_cursor(id: TaskId) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string())
}

fn decode_cursor(text: &str) -> Option<TaskId> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    TaskId::parse(std::str::from_utf8(&bytes).ok()?)
}
