//! `em-sim`: the Enterprise Manager simulator. See the README's "Simulator" section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use em_gateway::sim::{self, Faults, Seed, SimConfig};

/// A faithful Veeam Backup Enterprise Manager REST API (XML and JSON) for tests and demos.
///
/// Serves EM's `/api`: logon sessions, session-scoped tasks, cloud gateways and pools, backup
/// servers, Cloud Connect tenants (`/cloud/tenants`, create/edit/delete) with their storage
/// quotas (`/cloud/tenants/{id}/resources`), repositories (`/repositories`, sizes in bytes),
/// and `/query` (also `type=CloudTenant`, `type=Repository`). Control API under `/_sim`:
/// `GET /_sim/state`, `GET|PUT /_sim/faults`, `POST /_sim/sessions/expire`,
/// `POST /_sim/restart`, `POST /_sim/counters/reset`,
/// `POST /_sim/gateways/fill` with `{"count": N}` (a large EM at once),
/// `PUT /_sim/tenants/{id}/resources/{rid}/used` with `{"used_mb": N}` (simulated tenant
/// backups), `POST /_sim/tenants/{id}/password-check` with `{"password": "…"}`.
#[derive(Debug, Parser)]
#[command(name = "em-sim", version)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:9398", env = "EMSIM_LISTEN")]
    listen: SocketAddr,
    /// User name accepted at logon (`DOMAIN\user` allowed).
    #[arg(long, default_value = "admin", env = "EMSIM_USERNAME")]
    username: String,
    /// Password accepted at logon.
    #[arg(
        long,
        default_value = "secret",
        env = "EMSIM_PASSWORD",
        hide_env_values = true
    )]
    password: String,
    /// Milliseconds an operation runs before its task finishes.
    #[arg(long, default_value_t = 500)]
    task_ms: u64,
    /// Milliseconds a finished task shows `OperationFinished` before `Finished`.
    #[arg(long, default_value_t = 0)]
    operation_finished_ms: u64,
    /// Seconds of inactivity after which a logon session expires (EM: 900).
    #[arg(long, default_value_t = 900)]
    session_idle_secs: u64,
    /// JSON file with what to start with: `{"backup_servers": [...], "repositories": [...],
    /// "wan_accelerators": [...], "tenants": [{..., "resources": [...]}]}`. Without
    /// `repositories` each backup server gets two, without `wan_accelerators` one. Default:
    /// two backup servers, five repositories (one scale-out, one nearly full), two WAN
    /// accelerators, two tenants, one with a storage quota. Printed at start.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Base URL EM uses in its Hrefs (its own idea of its host name), e.g.
    /// `https://em.example.local:9398`. Default: the listen address.
    #[arg(long)]
    public_url: Option<String>,
    /// Milliseconds of latency added to every EM request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share (0..1) of EM requests answered 503 before anything is done.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share (0..1) of EM requests whose connection is dropped after processing.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Share (0..1) of operations whose task fails.
    #[arg(long, default_value_t = 0.0)]
    task_failure_rate: f64,
    /// Answer JSON with camelCase keys (as some v13 builds do).
    #[arg(long)]
    camel_case_json: bool,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Serve HTTPS with a self-signed certificate generated at start (marked as a CA, like
    /// EM's default); its SHA-256 fingerprint is printed for `EMGW_EM_CERT_SHA256`.
    #[arg(long)]
    tls: bool,
    /// With --tls: issue the certificate from a generated CA instead, which clients can trust
    /// as a CA file.
    #[arg(long, requires = "tls")]
    tls_ca: bool,
    /// With --tls: write the PEM clients should trust (the CA, or the self-signed certificate)
    /// to this file.
    #[arg(long, requires = "tls")]
    tls_cert_out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("em-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str::<Seed>(&text)
                .map_err(|e| format!("{} is not a seed file: {e}", path.display()))?
        }
        None => Seed::default(),
    };
    seed.check()
        .map_err(|e| format!("the seed does not hold together: {e}"))?;
    let faults = Faults {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        drop_rate: args.drop_rate,
        task_failure_rate: args.task_failure_rate,
        camel_case_json: args.camel_case_json,
        ..Faults::default()
    }
    .checked()?;
    let mut config = SimConfig::new(args.listen, &args.username, &args.password);
    config.public_url = args.public_url;
    config.task_time = Duration::from_millis(args.task_ms);
    config.operation_finished_time = Duration::from_millis(args.operation_finished_ms);
    config.session_idle = Duration::from_secs(args.session_idle_secs);
    config.faults = faults;
    config.workers = args.workers;
    config.seed = seed.clone();
    config.tls = match (args.tls, args.tls_ca) {
        (false, _) => None,
        (true, false) => Some(sim::tls::TlsMode::SelfSigned),
        (true, true) => Some(sim::tls::TlsMode::CaIssued),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let running = sim::start(config, true)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        println!("em-sim: Enterprise Manager API at {}", running.api_url);
        if let Some((fingerprint, pem)) = &running.tls {
            println!("em-sim: certificate SHA-256 {fingerprint}");
            if let Some(path) = &args.tls_cert_out {
                std::fs::write(path, pem)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                println!("em-sim: trust PEM written to {}", path.display());
            }
        }
        println!("em-sim: logon user {}", args.username);
        for line in seed.describe() {
            println!("em-sim: {line}");
        }
        running
            .server
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    })
}
