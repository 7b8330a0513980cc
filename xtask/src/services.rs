//! Real servers the tests talk to, started for the run on free loopback
//! ports and stopped when the guard is dropped: PostgreSQL (Debian's
//! binaries, run as the `postgres` user because it refuses root) and an
//! S3-compatible server (moto from PyPI, in a virtualenv under target/).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, Result, apt_install, free_port, is_root, run};

pub struct Postgres {
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    as_postgres_user: bool,
    /// Server options and log file, to start it again after [`Postgres::stop`].
    opts: String,
    log: PathBuf,
}

fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path().join("bin")).collect();
    versions.sort();
    versions.into_iter().rev().find(|b| b.join("initdb").is_file())
}

impl Postgres {
    pub fn start(work: &Path) -> Result<Postgres> {
        let bin = match postgres_bin() {
            Some(b) => b,
            None => {
                apt_install(&["postgresql"])?;
                postgres_bin().ok_or("PostgreSQL was installed but initdb is not under /usr/lib/postgresql/*/bin")?
            }
        };
        let port = free_port();
        let dir = work.join(format!("postgres-{port}"));
        let data = dir.join("data");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let as_postgres_user = is_root();
        if as_postgres_user {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir))?;
            // Every folder above must be traversable by `postgres`.
            let mut p = dir.parent();
            while let Some(d) = p {
                let _ = Command::new("chmod").arg("o+x").arg(d).status();
                p = d.parent();
            }
        }
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        let pg = Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            data: data.clone(),
            as_postgres_user,
            opts,
            log: dir.join("postgres.log"),
        };
        pg.command("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| if s.success() { Ok(()) } else { Err("initdb failed".into()) })?;
        pg.start_again()?;
        eprintln!("xtask: PostgreSQL {} on port {port}", pg.bin.display());
        Ok(pg)
    }

    /// Starts the server (again, after [`Postgres::stop`]) on its port and data.
    pub fn start_again(&self) -> Result {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-l"])
            .arg(&self.log)
            .args(["-o", &self.opts, "-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            return Err(format!("PostgreSQL did not start:\n{log}"));
        }
        Ok(())
    }

    /// Stops the server as a database restart does: sessions are ended
    /// (fast shutdown), clients see their connections drop.
    pub fn stop(&self) -> Result {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() { Ok(()) } else { Err("pg_ctl stop failed".into()) }
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

/// The Python virtualenv under target/ that holds the PyPI tools.
pub fn venv() -> Result<PathBuf> {
    let venv = util::root().join("target/tools/venv");
    if !venv.join("bin/pip").is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).stdout(Stdio::null()).status();
        if !matches!(made, Ok(s) if s.success()) {
            apt_install(&["python3-venv"]).map_err(|e| format!("cannot create a Python virtualenv ({e})"))?;
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
    }
    Ok(venv)
}

/// Installs PyPI packages (binary wheels only) into the virtualenv when `bin` is missing.
pub fn pip_tool(bin: &str, packages: &[&str]) -> Result<PathBuf> {
    let venv = venv()?;
    let exe = venv.join("bin").join(bin);
    if !exe.is_file() {
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"])
            .args(packages))?;
    }
    Ok(exe)
}

/// moto's S3 server on loopback, with one bucket created.
pub struct S3 {
    pub endpoint: String,
    pub port: u16,
    pub bucket: String,
    child: Child,
}

impl S3 {
    pub fn start(work: &Path) -> Result<S3> {
        let exe = pip_tool("moto_server", &["moto[server]"])?;
        let port = free_port();
        let log = std::fs::File::create(work.join(format!("moto-{port}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let s3 = S3 { endpoint: format!("http://127.0.0.1:{port}"), port, bucket: "audiobook-test".into(), child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http(port, "PUT", &format!("/{}", s3.bucket), &[]) {
                Ok(r) if r.status < 300 => break,
                Ok(r) => return Err(format!("moto refused to create the bucket (HTTP {})", r.status)),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(format!("moto did not answer on port {port}: {e}")),
            }
        }
        eprintln!("xtask: S3-compatible server (moto) on port {port}, bucket {}", s3.bucket);
        Ok(s3)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 answer: status, header lines and body (not de-chunked).
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A bare HTTP/1.1 request on loopback, with extra header lines and an
/// optional body as the last `("", body)` pair of `extra`.
pub fn http(port: u16, method: &str, path: &str, extra: &[(&str, &str)]) -> std::io::Result<HttpResponse> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = extra.iter().find(|(k, _)| k.is_empty()).map_or("", |(_, v)| *v);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in extra.iter().filter(|(k, _)| !k.is_empty()) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}Content-Length: {}\r\n\r\n{body}", body.len())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP status line {status_line:?}")))?;
    Ok(HttpResponse { status, headers: headers.to_string(), body: body.to_string() })
}
