//! The simulator's control API, under `/_sim` (outside EM's `/api`), for tests and demos:
//!
//! | call | does |
//! |---|---|
//! | `GET /_sim/state` | sessions, pending operations, objects, request and logon counters, faults |
//! | `GET /_sim/faults`, `PUT /_sim/faults` | read / change fault injection (PUT merges the fields given) |
//! | `POST /_sim/sessions/expire` | expires every logon session now (their tasks go with them) |
//! | `POST /_sim/restart` | forgets sessions and tasks, keeps objects; operations under way still complete |
//! | `POST /_sim/counters/reset` | zeroes the request and logon counters |

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::{Faults, Sim};

pub fn handle(req: &HttpRequest, body: &[u8], sim: &Sim) -> HttpResponse {
    let path = req.path().to_ascii_lowercase();
    let path = path.trim_end_matches('/');
    match (req.method().as_str(), path) {
        ("GET", "/_sim/state") => {
            let world = sim.world();
            HttpResponse::Ok().json(json!({
                "sessions": world.session_count(),
                "operations_pending": world.operations_pending(),
                "cloud_gateways": world.gateway_count(),
                "cloud_gateway_pools": world.pool_count(),
                "counters": world.counters,
                "faults": sim.faults(),
            }))
        }
        ("GET", "/_sim/faults") => HttpResponse::Ok().json(sim.faults()),
        ("PUT", "/_sim/faults") => {
            let mut merged = serde_json::to_value(sim.faults()).unwrap_or_default();
            let patch: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => return problem(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
            };
            if let (Some(target), Some(patch)) = (merged.as_object_mut(), patch.as_object()) {
                for (k, v) in patch {
                    target.insert(k.clone(), v.clone());
                }
            }
            match serde_json::from_value::<Faults>(merged)
                .map_err(|e| e.to_string())
                .and_then(Faults::checked)
            {
                Ok(faults) => {
                    sim.set_faults(faults.clone());
                    HttpResponse::Ok().json(faults)
                }
                Err(e) => problem(StatusCode::BAD_REQUEST, &e),
            }
        }
        ("POST", "/_sim/sessions/expire") => {
            let expired = sim.world().expire_all_sessions();
            HttpResponse::Ok().json(json!({ "expired": expired }))
        }
        ("POST", "/_sim/restart") => {
            sim.world().restart();
            HttpResponse::NoContent().finish()
        }
        ("POST", "/_sim/counters/reset") => {
            sim.world().counters = Default::default();
            HttpResponse::NoContent().finish()
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "no such control call; see GET /_sim/state",
        ),
    }
}

fn problem(status: StatusCode, detail: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": detail }))
}
