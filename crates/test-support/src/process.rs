//! The gateway as a separate process, for tests that kill it.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use em_gateway::sim::RunningSim;

use crate::sim::{PASSWORD, USER};

/// Lines of output kept per process: enough for a test's run at debug level, bounded for a
/// benchmark's long one.
const KEPT_LINES: usize = 200_000;

/// What a process printed, stdout and stderr interleaved as read.
#[derive(Debug, Default)]
struct Output {
    lines: Vec<String>,
    /// Lines past [`KEPT_LINES`], not kept.
    dropped: usize,
}

impl Output {
    fn push(&mut self, line: String) {
        if self.lines.len() < KEPT_LINES {
            self.lines.push(line);
        } else {
            self.dropped += 1;
        }
    }
}

/// A started program, killed when dropped.
pub struct Process {
    child: tokio::process::Child,
    /// The line it announced itself with.
    pub announced: String,
    output: Arc<Mutex<Output>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    /// Starts `program` with only `env` in its environment and waits (up to a minute) for a line
    /// containing `marker` on its stdout or stderr; both are drained afterwards so it never
    /// blocks on a full pipe.
    pub async fn start(
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        marker: &str,
    ) -> Result<Process, String> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut err = BufReader::new(child.stderr.take().ok_or("no stderr")?).lines();
        let output: Arc<Mutex<Output>> = Arc::default();
        let keep = |line: &str| output.lock().unwrap().push(line.to_string());
        let announced = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let line = tokio::select! {
                    Ok(Some(l)) = out.next_line() => l,
                    Ok(Some(l)) = err.next_line() => l,
                    else => return Err(format!("{} exited before announcing itself", program.display())),
                };
                keep(&line);
                if line.contains(marker) {
                    return Ok(line);
                }
            }
        })
        .await
        .map_err(|_| format!("{} did not start within a minute", program.display()))??;
        let (o, e) = (output.clone(), output.clone());
        let readers = vec![
            tokio::spawn(async move {
                while let Ok(Some(l)) = out.next_line().await {
                    o.lock().unwrap().push(l);
                }
            }),
            tokio::spawn(async move {
                while let Ok(Some(l)) = err.next_line().await {
                    e.lock().unwrap().push(l);
                }
            }),
        ];
        Ok(Process {
            child,
            announced,
            output,
            readers,
        })
    }

    /// SIGTERM, waits for it to exit (up to `patience`, then SIGKILL), and returns every line it
    /// printed, to the last. Panics if some were not kept.
    pub async fn terminate_and_read(
        mut self,
        patience: Duration,
    ) -> (Option<std::process::ExitStatus>, Vec<String>) {
        let readers = std::mem::take(&mut self.readers);
        let output = self.output.clone();
        let status = self.terminate(patience).await;
        for reader in readers {
            // The pipes close with the process; the rest of its output is read by then.
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        let output = std::mem::take(&mut *output.lock().unwrap());
        assert_eq!(output.dropped, 0, "more than {KEPT_LINES} lines of output");
        (status, output.lines)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGKILL: no shutdown at all.
    pub async fn kill(mut self) {
        self.child.kill().await.ok();
    }

    /// SIGTERM, then waits for the process to exit (up to `patience`, then SIGKILL).
    pub async fn terminate(mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            // The `kill` command: no unsafe code for one signal to our own child.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(patience, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                self.child.kill().await.ok();
                None
            }
        }
    }
}

/// A running `em-sim` process.
pub struct SimProcess {
    pub process: Process,
    /// EM's base URL, `http://127.0.0.1:PORT/api`.
    pub api_url: String,
}

impl SimProcess {
    /// Starts `program` (the `em-sim` binary) on a free port with these extra arguments.
    pub async fn start(program: &Path, args: &[&str]) -> Result<SimProcess, String> {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let env = [("RUST_LOG".to_string(), "warn".to_string())];
        let process = Process::start(program, &all, &env, "Enterprise Manager API at").await?;
        let api_url = process
            .announced
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(SimProcess { process, api_url })
    }
}

/// A running `em-gateway serve` process.
pub struct GatewayProcess {
    pub process: Process,
    pub base: String,
}

impl GatewayProcess {
    /// Starts `program serve` (the `em-gateway` binary) with these variables, a free port and
    /// JSON logs, and waits until it listens.
    pub async fn start(program: &Path, vars: &[(String, String)]) -> GatewayProcess {
        let mut env: Vec<(String, String)> = vec![
            ("EMGW_LISTEN".into(), "127.0.0.1:0".into()),
            ("EMGW_LOG_FORMAT".into(), "json".into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        for (k, v) in vars {
            env.retain(|(n, _)| n != k);
            env.push((k.clone(), v.clone()));
        }
        let process = Process::start(program, &["serve"], &env, "em-gateway listening")
            .await
            .expect("em-gateway starts");
        let line: serde_json::Value =
            serde_json::from_str(&process.announced).expect("a JSON log line");
        let port = line["port"].as_u64().expect("the port in the log line");
        GatewayProcess {
            process,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGKILL: no shutdown, no logoff, leases left behind.
    pub async fn kill(self) {
        self.process.kill().await;
    }

    /// SIGTERM: a clean stop. Returns how it exited and its whole log.
    pub async fn stop(self) -> (Option<std::process::ExitStatus>, Vec<String>) {
        self.process
            .terminate_and_read(Duration::from_secs(30))
            .await
    }
}

/// The variables a gateway process needs to run in front of `sim` on `database_url`.
pub fn process_vars(
    sim: &RunningSim,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("EMGW_EM_URL", sim.api_url.as_str()),
        ("EMGW_EM_USERNAME", USER),
        ("EMGW_EM_PASSWORD", PASSWORD),
        ("EMGW_EM_SESSIONS", "2"),
        ("EMGW_EM_TIMEOUT_MS", "500"),
        ("EMGW_POLL_INTERVAL_MS", "50"),
        ("EMGW_SETTLE_GRACE_MS", "5000"),
        ("EMGW_WEBHOOK_ALLOW_PRIVATE", "true"),
        (
            "EMGW_WEBHOOK_RETRY_SCHEDULE",
            "200ms,200ms,500ms,1s,1s,2s,2s",
        ),
        ("EMGW_WEBHOOK_TIMEOUT_MS", "1000"),
        ("EMGW_SECRET_KEY", crate::TEST_SECRET_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.retain(|(n, _)| n != k);
        vars.push((k.to_string(), v.to_string()));
    }
    vars
}
