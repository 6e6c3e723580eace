//! atsso-bench: a provider-agnostic HTTP load driver for OpenID Connect
//! providers (atsso and the peers a user would pick instead).
//!
//! It drives an already running provider described by a "target" JSON file
//! (see `Target`) with N concurrent tasks for a fixed time and prints, per
//! scenario, requests/s and latency p50/p90/p99.

mod flow;
mod raw;
mod report;
mod rsa;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::flow::Target;
use crate::run::{RunConfig, Scenario};

#[derive(Parser)]
#[command(name = "atsso-bench", about = "OIDC provider load driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Target JSON file (the `PEER_READY` payload of a provider's set-up).
    #[arg(long)]
    target: Option<PathBuf>,
    /// all | discovery | jwks | authorize | token | cycle | refresh | userinfo | introspect
    /// (comma-separated list allowed).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Concurrent tasks, each with its own keep-alive HTTP/1.1 connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured time per scenario (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up per scenario, same load.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Display name for this run, instead of the target's `name`
    /// (e.g. "atsso Postgres ES256").
    #[arg(long)]
    name: Option<String>,
    /// KEY=VALUE recorded in the result JSON's `meta` (repeatable); the report
    /// reads `role` (atsso | peer | growth), `store` (sqlite | postgres) and
    /// `pair` (rs256 | es256) to compute the targets.
    #[arg(long = "meta", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios against a target (the default when no subcommand is given).
    Run(RunArgs),
    /// RS256 physical limit: `openssl speed -multi N -seconds S rsa2048` sign/s.
    Rsa {
        #[arg(long, default_value_t = 0, help = "processes (0 = number of CPUs)")]
        multi: usize,
        #[arg(long, default_value_t = 3)]
        seconds: u32,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Merge per-provider result JSONs (first = reference, e.g. atsso) into a
    /// markdown table with ratios, signing limit, memory and growth.
    Report {
        /// Result JSON files from `--json`; the first is the reference.
        #[arg(long = "results", num_args = 1.., required = true)]
        results: Vec<PathBuf>,
        /// JSON written by `atsso-bench rsa --json`.
        #[arg(long)]
        rsa: Option<PathBuf>,
        /// Peak RSS per server: NAME=KiB (repeatable).
        #[arg(long)]
        rss: Vec<String>,
        /// Result JSONs of atsso on seeded databases (`--meta role=growth
        /// store=… pair=…`), each compared with the atsso run of its store.
        #[arg(long = "growth", num_args = 1..)]
        growth: Vec<PathBuf>,
        #[arg(long, default_value = "seeded database")]
        growth_label: String,
        /// Result JSONs of the reference's token + refresh at other concurrencies.
        #[arg(long = "latency", num_args = 1..)]
        latency: Vec<PathBuf>,
        /// Commands to list in the report (repeatable).
        #[arg(long = "command")]
        commands: Vec<String>,
        #[arg(long)]
        md: Option<PathBuf>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Print the peak RSS (VmHWM) and current RSS of a process, in KiB.
    PeakRss {
        #[arg(long)]
        pid: u32,
    },
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("--meta KEY=VALUE, got {s:?}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = rt.block_on(async move {
        match cli.cmd {
            Some(Cmd::Rsa { multi, seconds, json }) => rsa::main(multi, seconds, json),
            Some(Cmd::Report { results, rsa, rss, growth, growth_label, latency, commands, md, json }) => {
                report::main(report::ReportArgs { results, rsa, rss, growth, growth_label, latency, commands, md, json })
            }
            Some(Cmd::FreePort) => match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(a) => {
                    println!("{}", a.port());
                    0
                }
                Err(e) => {
                    eprintln!("free-port: {e}");
                    1
                }
            },
            Some(Cmd::PeakRss { pid }) => match read_rss(pid) {
                Ok((hwm, rss)) => {
                    println!("VmHWM_kB={hwm} VmRSS_kB={rss}");
                    0
                }
                Err(e) => {
                    eprintln!("peak-rss: {e}");
                    1
                }
            },
            Some(Cmd::Run(args)) => run_main(args).await,
            None => run_main(cli.run).await,
        }
    });
    std::process::exit(code);
}

fn read_rss(pid: u32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> u64 {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

async fn run_main(args: RunArgs) -> i32 {
    let Some(path) = args.target.clone() else {
        eprintln!("--target FILE is required (see bench/README.md)");
        return 2;
    };
    let mut target: Target =
        match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string())) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("reading target {}: {e}", path.display());
                return 2;
            }
        };
    if let Some(name) = args.name.clone() {
        target.name = name;
    }
    let scenarios = match Scenario::parse_list(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let cfg = RunConfig { concurrency: args.concurrency.max(1), duration: args.duration, warmup: args.warmup, timeout: args.timeout };
    let meta = args.meta.into_iter().collect();
    match run::run_all(target, scenarios, cfg, args.json, meta).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
