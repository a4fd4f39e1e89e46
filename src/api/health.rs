//! `/healthz` (the process lives) and `/readyz` (the database and EM answer, and EM takes the
//! gateway's credentials).

use actix_web::{HttpResponse, web};

use super::AppState;
use crate::em::error::retry_after_secs;

/// `/healthz`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// `/readyz`'s answer: `ok`, or what failed, for each dependency.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    database: String,
    enterprise_manager: String,
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "checkHealth",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// 200 when the database and Enterprise Manager answer; 503 naming the one that does not.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "checkReadiness",
    responses(
        (status = 200, description = "Ready", body = Readiness,
            example = json!({"database": "ok", "enterprise_manager": "ok"})),
        (status = 503, description = "Not ready; says which dependency failed", body = Readiness,
            headers(("Retry-After" = u32, description = "Seconds to wait before asking again")),
            example = json!({"database": "ok", "enterprise_manager": "Enterprise Manager is unreachable: could not connect"})),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (db, em) = tokio::join!(state.store.ping(), state.em.ping());
    // EM answering its anonymous entry point is not enough: while it refuses the gateway's
    // credentials, no call that needs a session can succeed.
    let em = em.and_then(|()| state.em.logon_refusal().map_or(Ok(()), Err));
    let ready = db.is_ok() && em.is_ok();
    let retry_after = match &em {
        Err(e) => e.retry_in().map(retry_after_secs),
        Ok(()) => None,
    };
    let show = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".into());
    let body = Readiness {
        database: show(db.map_err(|e| e.to_string())),
        enterprise_manager: show(em.map_err(|e| e.to_string())),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", retry_after.unwrap_or(5)))
            .json(body)
    }
}
