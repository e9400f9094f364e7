//! `spate dev` as a child process (for its TLS listener and generated CA).

use super::*;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::bail;
use spate_cluster_tests::harness::{spate_bin, tail};

/// `spate dev` as a child process on a free port range, killed (and reaped) on drop.
pub struct Dev {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Dev {
    pub async fn start() -> Result<Dev> {
        let port = free_port_range()?;
        let dir = tempfile::Builder::new()
            .prefix("spate-dev-sdk-")
            .tempdir()?;
        let log = std::fs::File::create(dir.path().join("dev.log"))?;
        let mut cmd = Command::new(spate_bin()?);
        cmd.arg("dev")
            .arg("--port")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().context("spawning spate dev")?;
        let mut dev = Dev { child, port, dir };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(90);
        for admin in port + 10..port + 13 {
            loop {
                if let Some(st) = dev.child.try_wait()? {
                    bail!("spate dev exited ({st}):\n{}", tail(&dev.log(), 40));
                }
                let ok = http
                    .get(format!("http://127.0.0.1:{admin}/ready"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "spate dev not ready:\n{}",
                    tail(&dev.log(), 40)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(dev)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("dev.log")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("data/tls/ca.pem")
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- spate dev log ----\n{}", tail(&self.log(), 60));
        }
    }
}

/// A base port P with P..P+2, P+10..P+12, P+20..P+22 and P+30..P+32 free on 127.0.0.1.
fn free_port_range() -> Result<u16> {
    for _ in 0..200 {
        let p: u16 = 20_000 + (rand::random::<u16>() % 30_000);
        let all: std::io::Result<Vec<_>> = [0u16, 10, 20, 30]
            .iter()
            .flat_map(|b| (0..3).map(move |i| p + b + i))
            .map(|q| std::net::TcpListener::bind(("127.0.0.1", q)))
            .collect();
        if all.is_ok() {
            return Ok(p);
        }
    }
    bail!("no free port range")
}

pub fn read_ca(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the dev CA {}", path.display()))
}
