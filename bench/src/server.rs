//! Spawning, health-checking, measuring and stopping the trainlens server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

pub struct Server {
    child: Child,
    pub pid: u32,
    pub base: String,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerStop {
    /// `VmHWM` (peak resident set) of the server process, read just before SIGTERM.
    pub vm_hwm_bytes: u64,
    /// `VmRSS` at the same moment.
    pub vm_rss_bytes: u64,
    /// Exit status after SIGTERM (or "killed" if it ignored SIGTERM).
    pub exit: String,
    /// Whether it exited within the grace period after SIGTERM.
    pub graceful: bool,
    pub shutdown_ms: f64,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(l.local_addr()?.port())
}

impl Server {
    /// `<bin> serve --bind 127.0.0.1:<port> --database-url <url> [extra...]`,
    /// then wait for `GET /healthz` -> 200.
    pub async fn start(
        bin: &Path,
        database_url: &str,
        extra_args: &[String],
        startup_timeout: Duration,
    ) -> Result<Server> {
        let port = free_port()?;
        let logdir = tempfile::Builder::new()
            .prefix("trainlens-bench-log-")
            .tempdir()
            .context("creating a temp dir for the server log")?;
        let log = logdir.path().join("server.log");
        let f = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(database_url)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id().context("server has no pid")?;
        let mut server = Server {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _logdir: logdir,
        };
        server.wait_healthy(startup_timeout).await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let client = crate::api::client(Duration::from_secs(2))?;
        let url = format!("{}/healthz", self.base);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "server exited ({st}) before becoming healthy; log tail:\n{}",
                    self.log_tail(40)
                );
            }
            let last = match client.get(&url).send().await {
                Ok(resp) if resp.status() == 200 => {
                    let body = resp.text().await.unwrap_or_default();
                    if !body.contains("ok") {
                        eprintln!("  warning: /healthz answered 200 with body {body:?}");
                    }
                    return Ok(());
                }
                Ok(resp) => format!("HTTP {}", resp.status()),
                Err(e) => format!("{e}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "server not healthy after {:?} (last: {last}); log tail:\n{}",
                    timeout,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(s) => {
                let all: Vec<&str> = s.lines().collect();
                let from = all.len().saturating_sub(lines);
                if all.is_empty() {
                    "  (server log is empty)".into()
                } else {
                    all[from..]
                        .iter()
                        .map(|l| format!("  | {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }
            Err(e) => format!("  (cannot read server log: {e})"),
        }
    }

    /// For error messages: is the server still alive, and what did it log last.
    pub fn diagnose(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(st)) => format!("server process has EXITED ({st})"),
            Ok(None) => "server process is still running".to_string(),
            Err(e) => format!("server state unknown: {e}"),
        };
        format!("{state}; server log tail:\n{}", self.log_tail(20))
    }

    /// Read `VmHWM`/`VmRSS`, send SIGTERM, wait (up to 60 s, then SIGKILL).
    pub async fn stop(mut self) -> Result<ServerStop> {
        if let Some(st) = self.child.try_wait()? {
            bail!(
                "server had already exited ({st}) before shutdown; log tail:\n{}",
                self.log_tail(40)
            );
        }
        let (vm_hwm_bytes, vm_rss_bytes) = read_mem(self.pid)?;
        let t = Instant::now();
        // SAFETY: plain kill(2) on our own child's pid, which has not been reaped.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            bail!("kill(SIGTERM) failed: {}", std::io::Error::last_os_error());
        }
        let (exit, graceful) =
            match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
                Ok(st) => (st?.to_string(), true),
                Err(_) => {
                    self.child.kill().await?;
                    (
                        "killed with SIGKILL after 60 s without exiting on SIGTERM".into(),
                        false,
                    )
                }
            };
        Ok(ServerStop {
            vm_hwm_bytes,
            vm_rss_bytes,
            exit,
            graceful,
            shutdown_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Hard stop after a failed phase.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// (VmHWM, VmRSS) in bytes from /proc/<pid>/status.
fn read_mem(pid: u32) -> Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = s
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing from /proc/{pid}/status"))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))?;
        Ok(kb * 1024)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}
