//! `em-floor`: the floor under the gateway's costs, for `em-bench` to measure beside it.
//!
//! The least a service in front of EM must do, written the plainest way with the same crates
//! (actix-web, sqlx's typed Postgres driver, reqwest) and nothing else: no API keys, no
//! validation beyond JSON, no idempotency, no metrics, no logs, no webhooks, no poller.
//!
//! - `GET /healthz`: actix-web's own floor, as the gateway's `/healthz`.
//! - `GET /tasks/{id}`: one indexed `SELECT` of a task row, answered as JSON: what a task read
//!   must do (tasks live in the database, shared by replicas).
//! - `POST /creates`: a JSON body in; the intent written and committed to disk before EM is
//!   called (a create accepted must not be lost); EM's XML create on one of a few logon
//!   sessions; EM's task id recorded (not waited to disk, as the gateway does); 202 with JSON.
//!
//! Configured by its environment: `FLOOR_DATABASE_URL`, `FLOOR_EM_URL` (EM's `…/api`),
//! `FLOOR_EM_USERNAME`, `FLOOR_EM_PASSWORD`, `FLOOR_EM_SESSIONS`. Prints
//! `em-floor listening on http://127.0.0.1:PORT` once it listens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const VBR01: &str = "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d";

struct Floor {
    /// Durable writes and reads.
    db: PgPool,
    /// Writes that need not wait for the disk (EM's task id: EM holds the task already).
    db_async: PgPool,
    em: reqwest::Client,
    em_url: String,
    sessions: Vec<String>,
    next: AtomicUsize,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("em-floor: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let database_url = env("FLOOR_DATABASE_URL")?;
    let em_url = env("FLOOR_EM_URL")?;
    let (user, password) = (env("FLOOR_EM_USERNAME")?, env("FLOOR_EM_PASSWORD")?);
    let sessions: usize = env("FLOOR_EM_SESSIONS")
        .unwrap_or_else(|_| "4".into())
        .parse()
        .map_err(|_| "FLOOR_EM_SESSIONS is not a number")?;
    // As many connections as the gateway's request pool.
    let db = PgPoolOptions::new()
        .max_connections(16)
        .connect(&database_url)
        .await
        .map_err(|e| e.to_string())?;
    let db_async = PgPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET synchronous_commit = off")
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&database_url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS floor_tasks (id BIGSERIAL PRIMARY KEY, \
         host TEXT NOT NULL, em_task TEXT, state TEXT NOT NULL, \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&db)
    .await
    .map_err(|e| e.to_string())?;
    // The gateway's TLS set-up (unused on em-sim's plain HTTP, but reqwest wants one).
    let tls = em_gateway::em::tls::client_config(&Default::default()).map_err(|e| e.to_string())?;
    let em = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokens = Vec::new();
    for _ in 0..sessions.max(1) {
        let resp = em
            .post(format!("{em_url}/sessionMngr/?v=v1_7"))
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let token = resp
            .headers()
            .get("x-restsvcsessionid")
            .and_then(|v| v.to_str().ok())
            .ok_or("EM gave no session")?
            .to_string();
        tokens.push(token);
    }
    let floor = web::Data::from(Arc::new(Floor {
        db,
        db_async,
        em,
        em_url,
        sessions: tokens,
        next: AtomicUsize::new(0),
    }));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(floor.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/tasks/{id}", web::get().to(read))
            .route("/creates", web::post().to(create))
    })
    .bind("127.0.0.1:0")
    .map_err(|e| e.to_string())?;
    let port = server.addrs().first().map(|a| a.port()).unwrap_or(0);
    println!("em-floor listening on http://127.0.0.1:{port}");
    server.run().await.map_err(|e| e.to_string())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// id, host, EM's task id, state.
type TaskRow = (i64, String, Option<String>, String);

async fn read(floor: web::Data<Floor>, id: web::Path<i64>) -> HttpResponse {
    let row: Result<Option<TaskRow>, _> =
        sqlx::query_as("SELECT id, host, em_task, state FROM floor_tasks WHERE id = $1")
            .bind(*id)
            .fetch_optional(&floor.db)
            .await;
    match row {
        Ok(Some((id, host, em_task, state))) => HttpResponse::Ok()
            .json(json!({"id": id, "host": host, "em_task": em_task, "state": state})),
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

async fn create(floor: web::Data<Floor>, body: web::Json<Value>) -> HttpResponse {
    let Some(host) = body["server_host_name"].as_str() else {
        return HttpResponse::BadRequest().finish();
    };
    let id: i64 = match sqlx::query_scalar(
        "INSERT INTO floor_tasks (host, state) VALUES ($1, 'running') RETURNING id",
    )
    .bind(host)
    .fetch_one(&floor.db)
    .await
    {
        Ok(id) => id,
        Err(_) => return HttpResponse::ServiceUnavailable().finish(),
    };
    let session =
        &floor.sessions[floor.next.fetch_add(1, Ordering::Relaxed) % floor.sessions.len()];
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><CreateCloudGatewaySpec xmlns="http://www.veeam.com/ent/v1.0"><ServerHostName>{host}</ServerHostName><ExternalPort>6180</ExternalPort><NetworkType>Direct</NetworkType><InternalPort>6180</InternalPort><BackupServerUid>{VBR01}</BackupServerUid></CreateCloudGatewaySpec>"#
    );
    let answer = floor
        .em
        .post(format!("{}/cloud/gateways", floor.em_url))
        .header("X-RestSvcSessionId", session.as_str())
        .header("Content-Type", "application/xml")
        .body(xml)
        .send()
        .await;
    let text = match answer {
        Ok(r) if r.status() == 202 => r.text().await.unwrap_or_default(),
        _ => return HttpResponse::BadGateway().finish(),
    };
    let em_task = text
        .split_once("<TaskId>")
        .and_then(|(_, rest)| rest.split_once("</TaskId>"))
        .map(|(task, _)| task.to_string());
    if sqlx::query("UPDATE floor_tasks SET em_task = $2 WHERE id = $1")
        .bind(id)
        .bind(&em_task)
        .execute(&floor.db_async)
        .await
        .is_err()
    {
        return HttpResponse::ServiceUnavailable().finish();
    }
    HttpResponse::Accepted().json(json!({"id": id, "state": "running", "em_task": em_task}))
}
