//! The pieces of a cluster on loopback: a throwaway PostgreSQL (default durability) that can be
//! stopped and started again, atsso nodes run from the built binary, and HAProxy in front.
//! Everything is stopped when dropped.
use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a shell command line as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(command_line: &str) -> std::process::Output {
    let mut command = if running_as_root() {
        let mut su = Command::new("su");
        su.args(["postgres", "-s", "/bin/sh", "-c", command_line]);
        su
    } else {
        let mut sh = Command::new("sh");
        sh.args(["-c", command_line]);
        sh
    };
    command.output().expect("run a PostgreSQL tool")
}

pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (apt-get install postgresql)")
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql");
        let dir = tempfile::Builder::new().prefix("atsso-cluster-pg").tempdir().unwrap();
        if running_as_root() {
            let status = Command::new("chown").args(["postgres", dir.path().to_str().unwrap()]).status().unwrap();
            assert!(status.success());
        }
        let postgres = Postgres { bin, dir, port: free_port() };
        let init =
            as_postgres(&format!("{}/initdb -D {}/data -U postgres -A trust", postgres.bin.display(), postgres.dir.path().display()));
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        postgres.resume();
        postgres
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&self) {
        let data = self.dir.path().join("data");
        let output = as_postgres(&format!(
            "{bin}/pg_ctl -D {data} -o '-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200' -l {data}/log -w start",
            bin = self.bin.display(),
            data = data.display(),
            port = self.port
        ));
        assert!(output.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&output.stdout));
    }

    /// Stops the server the way an operator's restart does (fast: connections are closed).
    pub fn stop(&self) {
        let output = as_postgres(&format!("{}/pg_ctl -D {}/data -m fast -w stop", self.bin.display(), self.dir.path().display()));
        assert!(output.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&output.stdout));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        as_postgres(&format!("{}/pg_ctl -D {}/data -m immediate stop", self.bin.display(), self.dir.path().display()));
    }
}

/// One atsso node: the built binary with the cluster's settings and its own bind address.
pub struct Node {
    pub name: &'static str,
    pub port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn new(name: &'static str, env: &[(String, String)], logs: &Path) -> Node {
        let port = free_port();
        let data_dir = logs.join(format!("data-{name}"));
        let mut env = env.to_vec();
        env.push(("ATSSO_BIND".into(), format!("127.0.0.1:{port}")));
        env.push(("ATSSO_DATA_DIR".into(), data_dir.display().to_string()));
        Node { name, port, env, log: logs.join(format!("{name}.log")), child: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sets (or overrides) one of the node's settings for its next start, e.g. a public URL
    /// that names the node's own port.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The node's ATSSO_DATA_DIR (its SQLite file lives there by default).
    pub fn data_dir(&self) -> PathBuf {
        let dir = self.env.iter().rev().find(|(k, _)| k == "ATSSO_DATA_DIR").map(|(_, v)| v.clone());
        PathBuf::from(dir.expect("a node has a data dir"))
    }

    /// Runs the atsso command line with the node's own settings and data dir; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_atsso"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(output.status.success(), "atsso {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn spawn(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_atsso"))
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start an atsso node");
        self.child = Some(child);
    }

    /// `kill -9`: no shutdown, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the atsso command line (clients, keys) with the cluster's settings; returns stdout.
pub fn atsso_cli(env: &[(String, String)], args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_atsso"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("ATSSO_DATA_DIR", std::env::temp_dir().join("atsso-cluster-cli"))
        .output()
        .unwrap();
    assert!(output.status.success(), "atsso {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// HAProxy in front of the nodes: round robin, health checks on /readyz, a request that could
/// not be connected is tried on another node (never a request that reached one).
pub struct Balancer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Balancer {
    pub fn start(port: u16, nodes: &[&Node]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let servers: String = nodes
            .iter()
            .map(|node| format!("    server {} 127.0.0.1:{} check inter 300ms fall 2 rise 2\n", node.name, node.port))
            .collect();
        let config = format!(
            "global\n    maxconn 2000\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n    \
             retries 2\n    option redispatch\n    retry-on conn-failure\n\
             frontend atsso\n    bind 127.0.0.1:{port}\n    option forwardfor\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let check = Command::new("haproxy").args(["-c", "-q", "-f", path.to_str().unwrap()]).output().expect("haproxy is installed");
        assert!(check.status.success(), "haproxy config: {}", String::from_utf8_lossy(&check.stderr));
        let child = Command::new("haproxy")
            .args(["-db", "-f", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Balancer { port, child, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it yields `Some`; panics after `within` naming `what`.
/// Returns the value and how long it took.
pub async fn eventually<T, F>(within: Duration, what: &str, mut check: impl FnMut() -> F) -> (T, Duration)
where
    F: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return (found, started.elapsed());
        }
        assert!(started.elapsed() < within, "gave up waiting after {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
