//! `/healthz` (the process lives) and `/readyz` (the database and EM answer).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// 200 while the process lives.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", example = json!({"status": "ok"}))))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when the database and Enterprise Manager answer; 503 naming the one that does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", example = json!({"database": "ok", "enterprise_manager": "ok"})),
        (status = 503, description = "Not ready; says which dependency failed",
            example = json!({"database": "ok", "enterprise_manager": "Enterprise Manager is unreachable: could not connect"})),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (db, em) = tokio::join!(state.store.ping(), state.em.ping());
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let db = db.map_err(|e| e.to_string());
    let em = em.map_err(|e| e.to_string());
    let body = json!({"database": show(&db), "enterprise_manager": show(&em)});
    if db.is_ok() && em.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}
