//! `atsso-bench report`: merge the per-provider JSON results of one run into
//! a markdown table with atsso/peer ratios, the signing limit, memory and
//! growth, and a combined JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

pub struct ReportArgs {
    pub results: Vec<PathBuf>,
    pub rsa: Option<PathBuf>,
    pub rss: Vec<String>,
    pub growth: Option<PathBuf>,
    pub growth_label: String,
    /// Runs of the reference (token, refresh) at other concurrencies.
    pub latency: Vec<PathBuf>,
    pub commands: Vec<String>,
    pub md: Option<PathBuf>,
    pub json: Option<PathBuf>,
}

fn load(p: &PathBuf) -> Result<Value, String> {
    let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&s).map_err(|e| format!("{}: {e}", p.display()))
}

fn scen<'a>(run: &'a Value, key: &str) -> Option<&'a Value> {
    run["scenarios"]
        .as_array()?
        .iter()
        .find(|s| s["scenario"] == key)
}

fn ok(s: &Value) -> bool {
    s["skipped"].is_null() && s["count"].as_u64().unwrap_or(0) > 0
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn fmt_rps(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({"cpu_model": model, "cores": cores, "mem_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0, "kernel": kernel})
}

pub fn main(a: ReportArgs) -> i32 {
    match run(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("report: {e}");
            1
        }
    }
}

fn run(a: ReportArgs) -> Result<(), String> {
    let runs: Vec<Value> = a.results.iter().map(load).collect::<Result<_, _>>()?;
    if runs.is_empty() {
        return Err("no --results".into());
    }
    let rsa = a.rsa.as_ref().map(load).transpose()?;
    let growth = a.growth.as_ref().map(load).transpose()?;
    let latency = a.latency.iter().map(load).collect::<Result<Vec<_>, _>>()?;
    let mut rss: BTreeMap<String, u64> = BTreeMap::new();
    for r in &a.rss {
        let (n, v) = r
            .split_once('=')
            .ok_or_else(|| format!("--rss NAME=KB, got {r:?}"))?;
        rss.insert(
            n.to_string(),
            v.parse()
                .map_err(|_| format!("--rss {r:?}: not a number"))?,
        );
    }
    let m = machine();
    let names: Vec<String> = runs
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("?").to_string())
        .collect();
    let reference = &runs[0];
    let refname = &names[0];
    let scenarios: Vec<String> = reference["scenarios"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|s| s["scenario"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();

    let mut md = String::new();
    let w = &mut md;
    use std::fmt::Write;
    let _ = writeln!(
        w,
        "Machine: {} × {} ({} GiB RAM, Linux {}). Load: {} concurrent keep-alive HTTP/1.1 connections, {}s measured after {}s warm-up per scenario; driver on the same machine.\n",
        m["cores"], m["cpu_model"].as_str().unwrap_or("?"), m["mem_gib"], m["kernel"].as_str().unwrap_or("?"),
        reference["concurrency"], reference["duration_s"], reference["warmup_s"]
    );

    // Throughput with ratios.
    let _ = write!(w, "### Requests per second\n\n| scenario |");
    for n in &names {
        let _ = write!(w, " {n} |");
    }
    for n in names.iter().skip(1) {
        let _ = write!(w, " {refname}/{n} |");
    }
    let _ = write!(w, "\n|---|");
    for _ in 0..(names.len() * 2 - 1) {
        let _ = write!(w, "---:|");
    }
    let _ = writeln!(w);
    let mut ratios = serde_json::Map::new();
    for key in &scenarios {
        let label = scen(reference, key)
            .and_then(|s| s["label"].as_str())
            .unwrap_or(key);
        let _ = write!(w, "| {label} |");
        for r in &runs {
            match scen(r, key) {
                Some(s) if ok(s) => {
                    let errs = s["errors"].as_u64().unwrap_or(0);
                    let mark = if errs > 0 {
                        format!(" ({errs} err)")
                    } else {
                        String::new()
                    };
                    let _ = write!(w, " {}{mark} |", fmt_rps(f(&s["rps"])));
                }
                Some(s) if !s["skipped"].is_null() => {
                    let _ = write!(w, " n/a |");
                }
                _ => {
                    let _ = write!(w, " – |");
                }
            }
        }
        let rref = scen(reference, key).filter(|s| ok(s)).map(|s| f(&s["rps"]));
        let mut row = serde_json::Map::new();
        for (i, r) in runs.iter().enumerate().skip(1) {
            let peer = scen(r, key).filter(|s| ok(s)).map(|s| f(&s["rps"]));
            match (rref, peer) {
                (Some(x), Some(y)) if y > 0.0 => {
                    let ratio = x / y;
                    row.insert(names[i].clone(), json!((ratio * 100.0).round() / 100.0));
                    let _ = write!(w, " {:.2}× |", ratio);
                }
                _ => {
                    let _ = write!(w, " – |");
                }
            }
        }
        ratios.insert(key.clone(), Value::Object(row));
        let _ = writeln!(w);
    }

    // Latency.
    let _ = write!(w, "\n### Latency p50 / p90 / p99 (ms)\n\n| scenario |");
    for n in &names {
        let _ = write!(w, " {n} |");
    }
    let _ = write!(w, "\n|---|");
    for _ in &names {
        let _ = write!(w, "---:|");
    }
    let _ = writeln!(w);
    for key in &scenarios {
        let _ = write!(w, "| {key} |");
        for r in &runs {
            match scen(r, key) {
                Some(s) if ok(s) => {
                    let _ = write!(
                        w,
                        " {:.1} / {:.1} / {:.1} |",
                        f(&s["p50_ms"]),
                        f(&s["p90_ms"]),
                        f(&s["p99_ms"])
                    );
                }
                _ => {
                    let _ = write!(w, " – |");
                }
            }
        }
        let _ = writeln!(w);
    }

    // Signing limit.
    let mut signing = serde_json::Map::new();
    if let Some(rsa) = &rsa {
        let sign = f(&rsa["sign_per_s"]);
        let _ = writeln!(
            w,
            "\n### Signing limit\n\n`{}`: **{:.0} RS256 signatures/s** ({}). Limit for a scenario = that ÷ RS256 signatures per request (counted in the token responses: id_token and JWT access/refresh tokens); fraction = measured req/s ÷ limit.\n",
            rsa["command"].as_str().unwrap_or("openssl speed"),
            sign,
            rsa["openssl_version"].as_str().unwrap_or("")
        );
        let _ = write!(w, "| scenario |");
        for n in &names {
            let _ = write!(w, " {n}: sigs/req → limit → fraction |");
        }
        let _ = write!(w, "\n|---|");
        for _ in &names {
            let _ = write!(w, "---|");
        }
        let _ = writeln!(w);
        for key in ["token", "cycle", "refresh"] {
            if !scenarios.iter().any(|s| s == key) {
                continue;
            }
            let _ = write!(w, "| {key} |");
            let mut row = serde_json::Map::new();
            for (i, r) in runs.iter().enumerate() {
                match scen(r, key).filter(|s| ok(s)) {
                    Some(s) if f(&s["rs256_per_request"]) > 0.0 => {
                        let sigs = f(&s["rs256_per_request"]);
                        let limit = sign / sigs;
                        let frac = f(&s["rps"]) / limit;
                        row.insert(
                            names[i].clone(),
                            json!({"sigs_per_request": sigs, "limit_rps": limit, "fraction": frac}),
                        );
                        let _ = write!(w, " {sigs:.1} → {limit:.0}/s → {:.0}% |", frac * 100.0);
                    }
                    Some(_) => {
                        let _ = write!(w, " 0 RS256 (unbounded by signing) |");
                    }
                    None => {
                        let _ = write!(w, " – |");
                    }
                }
            }
            signing.insert(key.into(), Value::Object(row));
            let _ = writeln!(w);
        }
    }

    // Memory.
    if !rss.is_empty() {
        let _ = writeln!(w, "\n### Memory: peak RSS (VmHWM) of each server over its whole run\n\n| server | peak RSS |\n|---|---:|");
        for (n, kb) in &rss {
            let _ = writeln!(w, "| {n} | {:.1} MiB |", *kb as f64 / 1024.0);
        }
    }

    // Growth.
    if let Some(g) = &growth {
        let _ = writeln!(
            w,
            "\n### Growth: {} vs. empty database ({})\n\n| scenario | empty req/s | seeded req/s | seeded/empty | empty p99 ms | seeded p99 ms |\n|---|---:|---:|---:|---:|---:|",
            a.growth_label,
            g["name"].as_str().unwrap_or("?")
        );
        for key in g["scenarios"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["scenario"].as_str())
        {
            let (Some(e), Some(s)) = (
                scen(reference, key).filter(|x| ok(x)),
                scen(g, key).filter(|x| ok(x)),
            ) else {
                continue;
            };
            let _ = writeln!(
                w,
                "| {key} | {} | {} | {:.2} | {:.1} | {:.1} |",
                fmt_rps(f(&e["rps"])),
                fmt_rps(f(&s["rps"])),
                f(&s["rps"]) / f(&e["rps"]).max(1e-9),
                f(&e["p99_ms"]),
                f(&s["p99_ms"])
            );
        }
    }

    // Latency by concurrency: the reference's token and refresh at other concurrencies, with
    // the main run, to separate what a request costs from time spent queueing for a core.
    if !latency.is_empty() {
        let mut by_concurrency: Vec<&Value> = latency.iter().chain(std::iter::once(reference)).collect();
        by_concurrency.sort_by_key(|r| r["concurrency"].as_u64().unwrap_or(0));
        let _ = writeln!(
            w,
            "\n### {}: token and refresh latency by concurrency\n\nSame server; a closed loop of N connections keeps N requests in flight, so mean latency =\nN ÷ throughput: once the cores are busy, more connections only queue.\n\n| concurrency | token req/s | token p50 / p90 / p99 ms | refresh req/s | refresh p50 / p90 / p99 ms |\n|---:|---:|---|---:|---|",
            reference["name"].as_str().unwrap_or("?")
        );
        for r in by_concurrency {
            let mut cells = Vec::new();
            for key in ["token", "refresh"] {
                match scen(r, key).filter(|x| ok(x)) {
                    Some(s) => {
                        cells.push(fmt_rps(f(&s["rps"])));
                        cells.push(format!("{:.1} / {:.1} / {:.1}", f(&s["p50_ms"]), f(&s["p90_ms"]), f(&s["p99_ms"])));
                    }
                    None => cells.extend(["–".to_string(), "–".to_string()]),
                }
            }
            let _ = writeln!(w, "| {} | {} |", r["concurrency"], cells.join(" | "));
        }
    }

    // Notes and errors.
    let _ = writeln!(w, "\n### Notes and errors\n");
    for r in runs.iter().chain(growth.iter()) {
        let n = r["name"].as_str().unwrap_or("?");
        if let Some(notes) = r["notes"].as_str() {
            let _ = writeln!(w, "- **{n}**: {notes}");
        }
        for s in r["scenarios"].as_array().into_iter().flatten() {
            let key = s["scenario"].as_str().unwrap_or("?");
            if let Some(sk) = s["skipped"].as_str() {
                let _ = writeln!(w, "- {n} / {key}: skipped: {sk}");
                continue;
            }
            let mut bits = Vec::new();
            if let Some(h) = s["avg_hops"].as_f64() {
                bits.push(format!("{h:.1} HTTP requests per authorize"));
            }
            if let Some(x) = s["note"].as_str() {
                bits.push(x.to_string());
            }
            if s["errors"].as_u64().unwrap_or(0) > 0 {
                bits.push(format!(
                    "{} errors, first: {}",
                    s["errors"],
                    s["first_error"].as_str().unwrap_or("?").replace('|', "/")
                ));
            }
            if !bits.is_empty() {
                let _ = writeln!(w, "- {n} / {key}: {}", bits.join("; "));
            }
        }
    }
    if !a.commands.is_empty() {
        let _ = writeln!(w, "\n### Commands\n\n```sh");
        for c in &a.commands {
            let _ = writeln!(w, "{c}");
        }
        let _ = writeln!(w, "```");
    }

    print!("{md}");
    if let Some(p) = &a.md {
        std::fs::write(p, &md).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &a.json {
        let out = json!({
            "machine": m,
            "rsa": rsa,
            "peak_rss_kb": rss,
            "ratios": ratios,
            "signing": signing,
            "runs": runs,
            "growth": growth,
            "latency_by_concurrency": latency,
            "commands": a.commands,
        });
        std::fs::write(p, serde_json::to_string_pretty(&out).unwrap())
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
