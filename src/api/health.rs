//! `/healthz` (the process lives) and `/readyz` (the database and EM answer).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

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
