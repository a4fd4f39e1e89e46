//! `em-gateway`: serve, demo, migrate, keys, openapi.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use em_gateway::access;
use em_gateway::config::{LogFormat, Settings};
use em_gateway::domain::{Owner, Scope};
use em_gateway::em::EmSettings;
use em_gateway::sim::{self, SimConfig};
use em_gateway::startup::{Application, Options};
use em_gateway::store::Store;
use secrecy::{ExposeSecret, SecretString};

/// A JSON API in front of Veeam Backup Enterprise Manager.
///
/// Configuration comes from environment variables (EMGW_LISTEN, DATABASE_URL, EMGW_EM_URL,
/// EMGW_EM_USERNAME, EMGW_EM_PASSWORD, …; see the README), over an optional TOML file.
#[derive(Debug, Parser)]
#[command(name = "em-gateway", version)]
struct Cli {
    /// A TOML file with the same keys as the environment, in lower case without `EMGW_`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the HTTP API, the task poller and the webhook deliverer.
    Serve,
    /// Runs the gateway with an embedded EM simulator and SQLite: nothing else needed.
    Demo,
    /// Applies database migrations and exits.
    Migrate,
    /// Manages API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Prints the OpenAPI document.
    Openapi,
    /// Prints a fresh server key for EMGW_SECRET_KEY (32 random bytes, base64).
    ///
    /// The key seals the secrets the database keeps (webhook signing secrets, answers kept for
    /// Idempotency-Key). Keep it apart from the database and its backups, and give every
    /// replica the same one. To rotate: the new key in EMGW_SECRET_KEY, the old one in
    /// EMGW_SECRET_KEYS_PREVIOUS until every replica has restarted.
    SecretKey,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Creates a key and prints it (once, alone on the last line).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
        /// The team or system the key belongs to: a read or write key sees only its owner's
        /// tasks and webhooks (default: `default`).
        #[arg(long)]
        owner: Option<String>,
        /// Expiry, e.g. 90d, 12h (default: never).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Lists keys (never their secret).
    List {
        /// Only this owner's keys.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Revokes a key by id.
    Revoke { id: String },
}

fn main() -> ExitCode {
    em_gateway::memory::limit_arenas();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    init_logging(&settings);
    if let Some(pepper) = &settings.api_key_pepper {
        access::set_pepper(pepper);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string()),
    };
    // Process-wide, so once per process: it ends with the runtime.
    runtime.spawn(em_gateway::memory::give_back_freed_memory());
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("em-gateway: {reason}");
    ExitCode::FAILURE
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = settings
        .log_format
        .unwrap_or(if std::io::stderr().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // The span fields written straight (see `em_gateway::logs`).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .fmt_fields(em_gateway::logs::JsonSpanFields)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

async fn run(command: Command, settings: Settings) -> Result<(), String> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Demo => demo(settings).await,
        Command::Migrate => {
            store(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys(keys) => keys_command(keys, &settings).await,
        Command::Openapi => {
            print!("{}", em_gateway::api::openapi::document());
            Ok(())
        }
        Command::SecretKey => {
            let (key, text) =
                em_gateway::secrets::ServerKey::generate().map_err(|e| e.to_string())?;
            eprintln!(
                "a new server key (key id {}); set it as EMGW_SECRET_KEY:",
                key.id()
            );
            println!("{}", text.expose_secret());
            Ok(())
        }
    }
}

async fn store(settings: &Settings) -> Result<Store, String> {
    let store = Store::connect(settings.database_url.expose_secret())
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

async fn serve(settings: Settings) -> Result<(), String> {
    let app = Application::build(&settings, Options::service())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(port = app.port(), "em-gateway listening");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn demo(mut settings: Settings) -> Result<(), String> {
    if std::env::var_os("DATABASE_URL").is_none() {
        settings.database_url = SecretString::from("sqlite://em-gateway-demo.db".to_string());
    }
    let sim_password = uuid::Uuid::new_v4().to_string();
    let mut sim_config = SimConfig::new(([127, 0, 0, 1], 0).into(), "demo\\portal", &sim_password);
    sim_config.task_time = Duration::from_millis(1500);
    let seed = sim_config.seed.clone();
    let sim =
        sim::start(sim_config, false).map_err(|e| format!("cannot start the EM simulator: {e}"))?;
    let url = sim
        .api_url
        .parse()
        .map_err(|e| format!("the EM simulator's URL: {e}"))?;
    let mut em =
        EmSettings::new(url, "demo\\portal", SecretString::from(sim_password)).with_sessions(2);
    em.request_timeout = Duration::from_secs(10);
    settings.em = Some(em);
    let app = Application::build(&settings, Options::service())
        .await
        .map_err(|e| e.to_string())?;
    let now = em_gateway::clock::Clock::system().now();
    let key = access::issue(
        app.store(),
        "demo admin",
        Scope::Admin,
        Owner::default(),
        None,
        now,
    )
    .await
    .map_err(|e| e.to_string())?;
    let base = format!("http://{}:{}", settings.listen.ip(), app.port());
    let server = seed
        .backup_servers
        .first()
        .map(|b| format!("urn:veeam:BackupServer:{}", b.id))
        .unwrap_or_default();
    println!(
        "em-gateway demo (Enterprise Manager simulated at {})",
        sim.api_url
    );
    println!();
    println!("  base URL   {base}");
    println!("  docs       {base}/docs/");
    for line in seed.describe() {
        println!("  {line}");
    }
    println!();
    println!("  try:");
    println!("    export KEY=<the key below>");
    println!(
        "    curl -s -X POST {base}/v1/cloud-gateways -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n      -d '{{\"backup_server_uid\": \"{server}\", \"server_host_name\": \"gw01.example.local\"}}'"
    );
    println!("    curl -s {base}/v1/tasks -H \"Authorization: Bearer $KEY\"");
    println!();
    println!("admin API key (shown once):");
    println!("{}", key.token.expose_secret());
    let result = app.run_until_stopped().await;
    sim.stop().await;
    result.map_err(|e| e.to_string())
}

fn parse_owner(text: Option<&str>) -> Result<Option<Owner>, String> {
    text.map(|t| Owner::parse(t).map_err(|e| format!("--owner {t:?}: {e}")))
        .transpose()
}

fn parse_expiry(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let (n, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = n
        .parse()
        .map_err(|_| format!("--expires-in {text:?}: expected e.g. 90d or 12h"))?;
    let delta = match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        _ => return Err(format!("--expires-in {text:?}: expected e.g. 90d or 12h")),
    };
    Ok(chrono::Utc::now() + delta)
}

async fn keys_command(command: KeysCommand, settings: &Settings) -> Result<(), String> {
    let store = store(settings).await?;
    match command {
        KeysCommand::Create {
            name,
            scope,
            owner,
            expires_in,
        } => {
            let scope = Scope::parse(&scope).ok_or("--scope must be read, write or admin")?;
            let owner = parse_owner(owner.as_deref())?.unwrap_or_default();
            let expires = expires_in.as_deref().map(parse_expiry).transpose()?;
            let now = em_gateway::clock::Clock::system().now();
            let key = access::issue(&store, &name, scope, owner, expires, now)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "created API key {} ({}, scope {}, owner {})",
                key.record.id, key.record.name, key.record.scope, key.record.owner
            );
            println!("{}", key.token.expose_secret());
        }
        KeysCommand::List { owner } => {
            let owner = parse_owner(owner.as_deref())?;
            let keys = store
                .list_api_keys(owner.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{:<36}  {:<6}  {:<16}  {:<12}  {:<20}  {:<10}  name",
                "id", "scope", "owner", "prefix", "created", "state"
            );
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if !k.usable(em_gateway::clock::Clock::system().now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<36}  {:<6}  {:<16}  {:<12}  {:<20}  {:<10}  {}",
                    k.id,
                    k.scope,
                    k.owner,
                    k.prefix,
                    k.created_at.format("%Y-%m-%d %H:%M:%S"),
                    state,
                    k.name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let key = em_gateway::domain::ApiKeyId::parse(&id)
                .ok_or_else(|| format!("no active API key {id}"))?;
            let now = em_gateway::clock::Clock::system().now();
            if !store
                .revoke_api_key(key, now)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no active API key {id}"));
            }
            println!("revoked {id}");
        }
    }
    store.close().await;
    Ok(())
}
