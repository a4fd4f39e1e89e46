//! The simulator's control API, under `/_sim` (outside EM's `/api`), for tests and demos:
//!
//! | call | does |
//! |---|---|
//! | `GET /_sim/state` | sessions, pending operations, objects, request and logon counters, faults |
//! | `GET /_sim/faults`, `PUT /_sim/faults` | read / change fault injection (PUT merges the fields given) |
//! | `POST /_sim/sessions/expire` | expires every logon session now (their tasks go with them) |
//! | `POST /_sim/restart` | forgets sessions and tasks, keeps objects; operations under way still complete |
//! | `POST /_sim/counters/reset` | zeroes the request and logon counters |
//! | `POST /_sim/gateways/fill` | `{"count": N}` (at most 1,000,000): adds N cloud gateways to the first backup server at once, with no tasks (a large EM for benchmarks) |
//! | `PUT /_sim/account` | `{"password": "…"}`: the API account's new password (sessions stay) |
//! | `PUT /_sim/tenants/{id}/resources/{rid}/used` | `{"used_mb": N}`: the space a quota's backups take (simulated tenant backups) |
//! | `POST /_sim/tenants/{id}/password-check` | `{"password": "…"}` → `{"matches": bool}`: whether a tenant's password is that one |

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};
use uuid::Uuid;

use super::body::parse_uid;
use super::state::{MB, UsedError, World};
use super::views::uid;
use super::{Faults, Sim};

/// Gateways one fill call adds at most.
const MAX_FILL: usize = 1_000_000;

pub fn handle(req: &HttpRequest, body: &[u8], sim: &Sim) -> HttpResponse {
    let path = req.path().to_ascii_lowercase();
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method().as_str(), segments.as_slice()) {
        ("PUT", ["_sim", "tenants", tenant, "resources", quota, "used"]) => {
            set_used(sim, tenant, quota, body)
        }
        ("POST", ["_sim", "tenants", tenant, "password-check"]) => {
            password_check(sim, tenant, body)
        }
        _ => handle_fixed(req, path, body, sim),
    }
}

fn handle_fixed(req: &HttpRequest, path: &str, body: &[u8], sim: &Sim) -> HttpResponse {
    match (req.method().as_str(), path) {
        ("GET", "/_sim/state") => {
            let mut world = sim.world();
            // Operations that are due show in the state as they would in EM's answers.
            world.advance(Instant::now());
            HttpResponse::Ok().json(json!({
                "sessions": world.session_count(),
                "operations_pending": world.operations_pending(),
                "cloud_gateways": world.gateway_count(),
                "cloud_gateway_pools": world.pool_count(),
                "cloud_tenants": world.all_tenants().len(),
                "backup_servers": world.backup_servers.iter().map(|b| json!({
                    "id": b.id, "uid": uid("BackupServer", b.id), "name": b.name,
                })).collect::<Vec<_>>(),
                "repositories": repositories(&world),
                "wan_accelerators": world.wan_accelerators.iter().map(|w| json!({
                    "id": w.id, "uid": uid("WanAccelerator", w.id), "name": w.name,
                    "backup_server": w.backup_server,
                })).collect::<Vec<_>>(),
                "tenants": tenants(&world),
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
        ("POST", "/_sim/gateways/fill") => {
            let count = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("count").and_then(Value::as_u64))
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= MAX_FILL);
            match count {
                Some(count) => {
                    let mut world = sim.world();
                    let added = world.fill_gateways(count);
                    HttpResponse::Ok().json(json!({
                        "added": added,
                        "cloud_gateways": world.gateway_count(),
                    }))
                }
                None => problem(
                    StatusCode::BAD_REQUEST,
                    r#"the body must be {"count": N}, N at most 1000000"#,
                ),
            }
        }
        ("PUT", "/_sim/account") => {
            let password = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
                v.get("password")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            match password {
                Some(password) => {
                    sim.set_password(password);
                    HttpResponse::NoContent().finish()
                }
                None => problem(
                    StatusCode::BAD_REQUEST,
                    r#"the body must be {"password": "…"}"#,
                ),
            }
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "no such control call; see GET /_sim/state",
        ),
    }
}

fn repositories(world: &World) -> Vec<Value> {
    world
        .repositories
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "uid": uid("Repository", r.id),
                "name": r.name,
                "backup_server": r.backup_server,
                "kind": r.kind.as_em(),
                "capacity_mb": r.capacity_mb,
                "seeded_free_mb": r.free_mb,
                "used_mb": world.repository_used_mb(r.id),
                "left_behind_mb": world.repository_left_behind_mb(r.id),
                "free_mb": world.repository_free_mb(r),
                "free_space_bytes": world.repository_free_mb(r) * MB,
            })
        })
        .collect()
}

/// Every tenant, also those whose create task is not `Finished` yet; never a password.
fn tenants(world: &World) -> Vec<Value> {
    world
        .all_tenants()
        .into_iter()
        .map(|t| {
            json!({
                "id": t.id,
                "uid": uid("CloudTenant", t.id),
                "name": t.name,
                "backup_server": t.backup_server,
                "enabled": t.enabled,
                "visible": world.visible(t.visible_at),
                "has_password": t.password.is_some(),
                "cloud_gateway_pools": world.pools_of_tenant(t.id).iter().map(|p| p.id).collect::<Vec<_>>(),
                "resources": t.resources.iter().map(|q| json!({
                    "id": q.id,
                    "name": q.name,
                    "repository": q.repository,
                    "wan_accelerator": q.wan_accelerator,
                    "quota_mb": q.quota_mb,
                    "used_mb": q.used_mb,
                    "visible": world.visible(q.visible_at),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn set_used(sim: &Sim, tenant: &str, quota: &str, body: &[u8]) -> HttpResponse {
    let (Some(tenant), Some(quota)) = (
        parse_uid("CloudTenant", tenant),
        Uuid::parse_str(quota).ok(),
    ) else {
        return problem(StatusCode::NOT_FOUND, "no such tenant or storage quota");
    };
    let used_mb = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v.get("used_mb").and_then(Value::as_i64),
        Err(_) => None,
    };
    let Some(used_mb) = used_mb else {
        return problem(
            StatusCode::BAD_REQUEST,
            r#"the body must be {"used_mb": <whole number of MB>}"#,
        );
    };
    let mut world = sim.world();
    world.advance(Instant::now());
    match world.set_used(tenant, quota, used_mb) {
        Ok(q) => {
            let free = world
                .repository(q.repository)
                .map(|r| world.repository_free_mb(r));
            HttpResponse::Ok().json(json!({
                "tenant": tenant,
                "id": q.id,
                "name": q.name,
                "repository": q.repository,
                "quota_mb": q.quota_mb,
                "used_mb": q.used_mb,
                "repository_free_mb": free,
            }))
        }
        Err(UsedError::Negative) => {
            problem(StatusCode::BAD_REQUEST, "used_mb must not be negative")
        }
        Err(UsedError::NoTenant) => problem(StatusCode::NOT_FOUND, "no such tenant"),
        Err(UsedError::NoQuota) => problem(
            StatusCode::NOT_FOUND,
            "no such storage quota of that tenant",
        ),
    }
}

fn password_check(sim: &Sim, tenant: &str, body: &[u8]) -> HttpResponse {
    let Some(tenant) = parse_uid("CloudTenant", tenant) else {
        return problem(StatusCode::NOT_FOUND, "no such tenant");
    };
    let password = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("password")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let Some(password) = password else {
        return problem(
            StatusCode::BAD_REQUEST,
            r#"the body must be {"password": "…"}"#,
        );
    };
    let mut world = sim.world();
    world.advance(Instant::now());
    match world.check_password(tenant, &password) {
        Some(matches) => HttpResponse::Ok().json(json!({ "matches": matches })),
        None => problem(StatusCode::NOT_FOUND, "no such tenant"),
    }
}

fn problem(status: StatusCode, detail: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": detail }))
}
