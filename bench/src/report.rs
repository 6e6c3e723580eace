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
    /// Runs on seeded databases (`meta` role=growth, store, pair), each
    /// compared with the atsso run of the same store and pair.
    pub growth: Vec<PathBuf>,
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
    run["scenarios"].as_array()?.iter().find(|s| s["scenario"] == key)
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

/// Ratio columns (numerator, denominator) of the throughput table: each atsso
/// run ÷ the peer of its pair when runs carry `meta`, else the first run ÷ each
/// other run.
fn ratio_columns(runs: &[Value]) -> Vec<(usize, usize)> {
    let mut cols = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if meta(r, "role") != Some("atsso") {
            continue;
        }
        let pair = meta(r, "pair").unwrap_or("rs256");
        if let Some(j) = runs.iter().position(|p| meta(p, "role") == Some("peer") && meta(p, "pair") == Some(pair)) {
            cols.push((i, j));
        }
    }
    if cols.is_empty() && runs.iter().all(|r| r["meta"].is_null()) {
        cols = (1..runs.len()).map(|j| (0, j)).collect();
    }
    cols
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let ifma = cpuinfo.lines().find(|l| l.starts_with("flags")).is_some_and(|l| l.split_whitespace().any(|f| f == "avx512ifma"));
    json!({"cpu_model": model, "cores": cores, "avx512ifma": ifma, "mem_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0, "kernel": kernel})
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
    let growth = a.growth.iter().map(load).collect::<Result<Vec<_>, _>>()?;
    let latency = a.latency.iter().map(load).collect::<Result<Vec<_>, _>>()?;
    let mut rss: BTreeMap<String, u64> = BTreeMap::new();
    for r in &a.rss {
        let (n, v) = r.split_once('=').ok_or_else(|| format!("--rss NAME=KB, got {r:?}"))?;
        rss.insert(n.to_string(), v.parse().map_err(|_| format!("--rss {r:?}: not a number"))?);
    }
    let m = machine();
    let names: Vec<String> = runs.iter().map(|r| r["name"].as_str().unwrap_or("?").to_string()).collect();
    let reference = &runs[0];
    // Every scenario any run has, in the order of first appearance.
    let mut scenarios: Vec<String> = Vec::new();
    for r in &runs {
        for s in r["scenarios"].as_array().into_iter().flatten() {
            if let Some(k) = s["scenario"].as_str() {
                if !scenarios.iter().any(|x| x == k) {
                    scenarios.push(k.to_string());
                }
            }
        }
    }

    // Canonical order (a token-path-only run may come first).
    const ORDER: [&str; 8] = ["discovery", "jwks", "authorize", "token", "cycle", "refresh", "userinfo", "introspect"];
    scenarios.sort_by_key(|k| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()));
    let mut md = String::new();
    let w = &mut md;
    use std::fmt::Write;
    let _ = writeln!(
        w,
        "Machine: {} × {} (AVX-512 IFMA: {}; {} GiB RAM, Linux {}). Load: {} concurrent keep-alive HTTP/1.1 connections, {}s measured after {}s warm-up per scenario; driver on the same machine.\n",
        m["cores"], m["cpu_model"].as_str().unwrap_or("?"),
        if m["avx512ifma"] == true { "yes" } else { "no" }, m["mem_gib"], m["kernel"].as_str().unwrap_or("?"),
        reference["concurrency"], reference["duration_s"], reference["warmup_s"]
    );

    // Throughput with ratios.
    let columns = ratio_columns(&runs);
    let _ = write!(w, "### Requests per second\n\n| scenario |");
    for n in &names {
        let _ = write!(w, " {n} |");
    }
    for (i, j) in &columns {
        let _ = write!(w, " {} ÷ {} |", names[*i], names[*j]);
    }
    let _ = write!(w, "\n|---|");
    for _ in 0..(names.len() + columns.len()) {
        let _ = write!(w, "---:|");
    }
    let _ = writeln!(w);
    let mut ratios = serde_json::Map::new();
    for key in &scenarios {
        let label = runs.iter().find_map(|r| scen(r, key).and_then(|s| s["label"].as_str())).unwrap_or(key);
        let _ = write!(w, "| {label} |");
        for r in &runs {
            match scen(r, key) {
                Some(s) if ok(s) => {
                    let errs = s["errors"].as_u64().unwrap_or(0);
                    let mark = if errs > 0 { format!(" ({errs} err)") } else { String::new() };
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
        let mut row = serde_json::Map::new();
        for (i, j) in &columns {
            match (rps_of(&runs[*i], key), rps_of(&runs[*j], key)) {
                (Some(x), Some(y)) if y > 0.0 => {
                    let ratio = x / y;
                    row.insert(format!("{} ÷ {}", names[*i], names[*j]), json!((ratio * 100.0).round() / 100.0));
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
                    let _ = write!(w, " {:.1} / {:.1} / {:.1} |", f(&s["p50_ms"]), f(&s["p90_ms"]), f(&s["p99_ms"]));
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
        if let Some(ec) = rsa["ecdsa_p256_sign_per_s"].as_f64() {
            let _ = writeln!(
                w,
                "`{}`: **{ec:.0} ES256 (ECDSA P-256) signatures/s**.\n",
                rsa["ecdsa_command"].as_str().unwrap_or("openssl speed ecdsap256")
            );
        }
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
                        row.insert(names[i].clone(), json!({"sigs_per_request": sigs, "limit_rps": limit, "fraction": frac}));
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

    // Growth: each seeded run against the atsso run of its store and pair.
    for g in &growth {
        let empty = runs
            .iter()
            .find(|r| {
                meta(r, "role") == Some("atsso")
                    && meta(r, "store") == meta(g, "store")
                    && meta(r, "pair").unwrap_or("rs256") == meta(g, "pair").unwrap_or("rs256")
            })
            .unwrap_or(reference);
        let _ = writeln!(
            w,
            "\n### Growth: {} ({}) vs. empty database ({})\n\n| scenario | empty req/s | seeded req/s | seeded/empty | empty p99 ms | seeded p99 ms |\n|---|---:|---:|---:|---:|---:|",
            a.growth_label,
            run_name(g),
            run_name(empty)
        );
        for key in g["scenarios"].as_array().into_iter().flatten().filter_map(|s| s["scenario"].as_str()) {
            let (Some(e), Some(s)) = (scen(empty, key).filter(|x| ok(x)), scen(g, key).filter(|x| ok(x))) else {
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

    let target_rows = targets(&runs, &growth, rsa.as_ref(), &rss);
    if !target_rows.is_empty() {
        targets_md(w, &target_rows);
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
                bits.push(format!("{} errors, first: {}", s["errors"], s["first_error"].as_str().unwrap_or("?").replace('|', "/")));
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
            "targets": target_rows.iter().map(TargetRow::to_json).collect::<Vec<_>>(),
            "latency_by_concurrency": latency,
            "commands": a.commands,
        });
        std::fs::write(p, serde_json::to_string_pretty(&out).unwrap()).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

// ---- targets (issue 14) -------------------------------------------------------
//
// Runs carry `meta` (from `atsso-bench --meta`): `role` = atsso | peer | growth,
// `store` = sqlite | postgres (atsso), `pair` = rs256 | es256. An atsso run is
// compared with the peer run of the same pair (equal RSA work per response).

/// One line of the targets table.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRow {
    pub target: String,
    pub pair: String,
    pub measured: String,
    pub required: String,
    /// None: a figure it needs was not measured in this run.
    pub met: Option<bool>,
}

impl TargetRow {
    fn to_json(&self) -> Value {
        json!({"target": self.target, "pair": self.pair, "measured": self.measured,
               "required": self.required, "met": self.met})
    }
}

/// Peak RSS bound: 50 MB.
const RSS_LIMIT_KB: f64 = 50_000_000.0 / 1024.0;

fn meta<'a>(r: &'a Value, key: &str) -> Option<&'a str> {
    r["meta"][key].as_str()
}

fn rps_of(r: &Value, key: &str) -> Option<f64> {
    scen(r, key).filter(|s| ok(s)).map(|s| f(&s["rps"]))
}

fn p99_of(r: &Value, key: &str) -> Option<f64> {
    scen(r, key).filter(|s| ok(s)).map(|s| f(&s["p99_ms"]))
}

fn run_name(r: &Value) -> &str {
    r["name"].as_str().unwrap_or("?")
}

/// The peer run of `pair`.
fn peer_of<'a>(runs: &'a [Value], pair: &str) -> Option<&'a Value> {
    runs.iter().find(|r| meta(r, "role") == Some("peer") && meta(r, "pair") == Some(pair))
}

/// The peer to compare userinfo/introspection with: the pair's peer if it ran
/// `key`, else any paired peer that did (the opaque configuration: a JWT access
/// token for a resource server is not for userinfo).
fn reader_peer_of<'a>(runs: &'a [Value], pair: &str, key: &str) -> Option<&'a Value> {
    peer_of(runs, pair)
        .filter(|p| rps_of(p, key).is_some())
        .or_else(|| runs.iter().find(|r| meta(r, "role") == Some("peer") && meta(r, "pair").is_some() && rps_of(r, key).is_some()))
}

/// (RSA, ECDSA) signatures per token response in a pair: RS256 access tokens
/// sign twice with RSA (access token + id_token); ES256 ones once with each.
fn signatures(pair: &str) -> (f64, f64) {
    if pair == "es256" {
        (1.0, 1.0)
    } else {
        (2.0, 0.0)
    }
}

/// Responses/s the signing alone allows: 1 ÷ (time of the RSA signatures +
/// time of the ECDSA ones), from `openssl speed` on all cores.
pub fn signing_limit(pair: &str, rsa_per_s: f64, ecdsa_per_s: Option<f64>) -> f64 {
    let (r, e) = signatures(pair);
    let mut secs = r / rsa_per_s;
    if let Some(ec) = ecdsa_per_s.filter(|x| *x > 0.0) {
        secs += e / ec;
    }
    1.0 / secs
}

fn ratio_row(target: &str, pair: String, a: Option<f64>, p: Option<f64>, min: f64) -> TargetRow {
    match (a, p) {
        (Some(a), Some(p)) if p > 0.0 => TargetRow {
            target: target.into(),
            pair,
            measured: format!("{:.2}× ({} ÷ {})", a / p, fmt_rps(a), fmt_rps(p)),
            required: format!("≥ {min:.1}×"),
            met: Some(a / p >= min),
        },
        _ => TargetRow { target: target.into(), pair, measured: "not measured".into(), required: format!("≥ {min:.1}×"), met: None },
    }
}

fn store_label(store: &str) -> &str {
    match store {
        "sqlite" => "SQLite",
        "postgres" => "Postgres",
        s => s,
    }
}

/// The targets of issue 14, computed from one run's results.
pub fn targets(runs: &[Value], growth: &[Value], rsa: Option<&Value>, rss: &BTreeMap<String, u64>) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    let rsa_per_s = rsa.map(|r| f(&r["sign_per_s"])).filter(|x| *x > 0.0);
    let ecdsa_per_s = rsa.and_then(|r| r["ecdsa_p256_sign_per_s"].as_f64());
    let atsso: Vec<&Value> = runs.iter().filter(|r| meta(r, "role") == Some("atsso")).collect();
    for store in ["sqlite", "postgres"] {
        let sl = store_label(store);
        for a in atsso.iter().filter(|r| meta(r, "store") == Some(store)) {
            let pair = meta(a, "pair").unwrap_or("rs256");
            let peer = peer_of(runs, pair);
            let label = |p: Option<&Value>| format!("{} vs {}", run_name(a), p.map(run_name).unwrap_or("(no peer)"));
            let (min, keys) = if store == "sqlite" { (1.5, ["token", "refresh"]) } else { (1.0, ["token", "refresh"]) };
            for key in keys {
                let what = if key == "token" { "code exchange" } else { "refresh" };
                rows.push(ratio_row(
                    &format!("{sl}: {what} ≥ {min:.1}× oidc-provider"),
                    label(peer),
                    rps_of(a, key),
                    peer.and_then(|p| rps_of(p, key)),
                    min,
                ));
            }
            if store == "sqlite" {
                for key in ["token", "refresh"] {
                    let what = if key == "token" { "code exchange" } else { "refresh" };
                    let (r, e) = signatures(pair);
                    let required = format!("≥ 60 % of the signing limit ({r:.0} RSA + {e:.0} ECDSA signatures per response)");
                    rows.push(match (rps_of(a, key), rsa_per_s) {
                        (Some(x), Some(rsa)) => {
                            let limit = signing_limit(pair, rsa, ecdsa_per_s);
                            TargetRow {
                                target: format!("{sl}: {what} vs signing limit"),
                                pair: run_name(a).into(),
                                measured: format!("{:.0} % ({} of {:.0}/s)", x / limit * 100.0, fmt_rps(x), limit),
                                required,
                                met: Some(x >= 0.6 * limit),
                            }
                        }
                        _ => TargetRow {
                            target: format!("{sl}: {what} vs signing limit"),
                            pair: run_name(a).into(),
                            measured: "not measured".into(),
                            required,
                            met: None,
                        },
                    });
                }
                for key in ["token", "refresh"] {
                    let what = if key == "token" { "code exchange" } else { "refresh" };
                    let p99 = p99_of(a, key);
                    rows.push(TargetRow {
                        target: format!("{sl}: {what} p99"),
                        pair: run_name(a).into(),
                        measured: p99.map(|x| format!("{x:.1} ms")).unwrap_or_else(|| "not measured".into()),
                        required: "< 20 ms".into(),
                        met: p99.map(|x| x < 20.0),
                    });
                }
            } else {
                for key in ["userinfo", "introspect"] {
                    if scen(a, key).is_none() {
                        continue; // not run for this pair (token-path runs)
                    }
                    let what = if key == "userinfo" { "userinfo" } else { "introspection" };
                    let p = reader_peer_of(runs, pair, key);
                    rows.push(ratio_row(
                        &format!("{sl}: {what} ≥ 3.0× oidc-provider"),
                        label(p),
                        rps_of(a, key),
                        p.and_then(|p| rps_of(p, key)),
                        3.0,
                    ));
                }
            }
            rows.push(ratio_row(
                &format!("{sl}: authorize + exchange ≥ 2.0× oidc-provider"),
                label(peer),
                rps_of(a, "cycle"),
                peer.and_then(|p| rps_of(p, "cycle")),
                2.0,
            ));
        }
    }
    for r in atsso.iter().copied().chain(growth.iter()) {
        let n = run_name(r);
        let kb = rss.get(n).map(|kb| *kb as f64);
        rows.push(TargetRow {
            target: "peak RSS".into(),
            pair: n.into(),
            measured: kb.map(|kb| format!("{:.1} MB", kb * 1024.0 / 1e6)).unwrap_or_else(|| "not measured".into()),
            required: "< 50 MB".into(),
            met: kb.map(|kb| kb < RSS_LIMIT_KB),
        });
    }
    for g in growth {
        let store = meta(g, "store").unwrap_or("sqlite");
        let pair = meta(g, "pair").unwrap_or("rs256");
        let empty = atsso.iter().find(|r| meta(r, "store") == Some(store) && meta(r, "pair").unwrap_or("rs256") == pair);
        for key in ["refresh", "userinfo"] {
            if scen(g, key).is_none() {
                continue;
            }
            let (s, e) = (rps_of(g, key), empty.and_then(|r| rps_of(r, key)));
            rows.push(match (s, e) {
                (Some(s), Some(e)) if e > 0.0 => TargetRow {
                    target: format!("{}: {key} with stored grants", store_label(store)),
                    pair: format!("{} vs {}", run_name(g), empty.map(|r| run_name(r)).unwrap_or("?")),
                    measured: if s >= e {
                        format!("no loss, {:+.0} % ({} vs {})", (s / e - 1.0) * 100.0, fmt_rps(s), fmt_rps(e))
                    } else {
                        format!("{:.0} % loss ({} vs {})", (1.0 - s / e) * 100.0, fmt_rps(s), fmt_rps(e))
                    },
                    required: "< 20 % loss".into(),
                    met: Some(s / e > 0.8),
                },
                _ => TargetRow {
                    target: format!("{}: {key} with stored grants", store_label(store)),
                    pair: run_name(g).into(),
                    measured: "not measured".into(),
                    required: "< 20 % loss".into(),
                    met: None,
                },
            });
        }
    }
    rows
}

fn targets_md(w: &mut String, rows: &[TargetRow]) {
    use std::fmt::Write;
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    let missed = rows.iter().filter(|r| r.met == Some(false)).count();
    let _ = writeln!(
        w,
        "\n### Targets (issue 14): {met} met, {missed} missed, {} not measured\n\nRatios = atsso ÷ the peer of its pair, from this run.\n\n| target | run(s) | measured | required | result |\n|---|---|---|---|---|",
        rows.len() - met - missed
    );
    for r in rows {
        let res = match r.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(w, "| {} | {} | {} | {} | {res} |", r.target, r.pair, r.measured, r.required);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(key: &str, rps: f64, p99: f64) -> Value {
        json!({"scenario": key, "rps": rps, "p99_ms": p99, "count": 100, "errors": 0})
    }

    fn run(name: &str, meta: Value, scenarios: Vec<Value>) -> Value {
        json!({"name": name, "meta": meta, "scenarios": scenarios})
    }

    fn find<'a>(rows: &'a [TargetRow], target: &str, pair_starts: &str) -> &'a TargetRow {
        rows.iter()
            .find(|r| r.target == target && r.pair.starts_with(pair_starts))
            .unwrap_or_else(|| panic!("no row {target} / {pair_starts} in {rows:#?}"))
    }

    fn fixture() -> Vec<Value> {
        vec![
            run(
                "atsso SQLite RS256",
                json!({"role": "atsso", "store": "sqlite", "pair": "rs256"}),
                vec![sc("token", 3000.0, 15.0), sc("refresh", 2900.0, 25.0), sc("cycle", 2000.0, 30.0), sc("userinfo", 100000.0, 1.0)],
            ),
            run(
                "atsso Postgres ES256",
                json!({"role": "atsso", "store": "postgres", "pair": "es256"}),
                vec![sc("token", 3600.0, 15.0), sc("refresh", 3000.0, 15.0), sc("cycle", 1000.0, 30.0)],
            ),
            run(
                "atsso Postgres RS256",
                json!({"role": "atsso", "store": "postgres", "pair": "rs256"}),
                vec![
                    sc("token", 1900.0, 15.0),
                    sc("refresh", 1900.0, 15.0),
                    sc("cycle", 1000.0, 30.0),
                    sc("userinfo", 29000.0, 2.0),
                    sc("introspect", 20000.0, 2.0),
                ],
            ),
            run(
                "oidc-provider JWT(RS256)",
                json!({"role": "peer", "pair": "rs256"}),
                vec![sc("token", 1800.0, 20.0), sc("refresh", 2000.0, 20.0), sc("cycle", 900.0, 40.0)],
            ),
            run(
                "oidc-provider opaque",
                json!({"role": "peer", "pair": "es256"}),
                vec![
                    sc("token", 3500.0, 20.0),
                    sc("refresh", 3500.0, 20.0),
                    sc("cycle", 1000.0, 40.0),
                    sc("userinfo", 10000.0, 5.0),
                    sc("introspect", 6000.0, 5.0),
                ],
            ),
            run("better-auth", json!({"role": "peer"}), vec![sc("token", 300.0, 150.0)]),
        ]
    }

    #[test]
    fn ratios_compare_each_atsso_run_with_the_peer_of_its_pair() {
        let rows = targets(&fixture(), &[], None, &BTreeMap::new());
        let r = find(&rows, "SQLite: code exchange ≥ 1.5× oidc-provider", "atsso SQLite RS256");
        assert_eq!(r.pair, "atsso SQLite RS256 vs oidc-provider JWT(RS256)");
        assert_eq!(r.met, Some(true)); // 3000 / 1800 = 1.67
        let r = find(&rows, "SQLite: refresh ≥ 1.5× oidc-provider", "atsso SQLite RS256");
        assert_eq!(r.met, Some(false)); // 2900 / 2000 = 1.45
        let r = find(&rows, "Postgres: code exchange ≥ 1.0× oidc-provider", "atsso Postgres ES256");
        assert_eq!(r.met, Some(true)); // 3600 / 3500
        let r = find(&rows, "Postgres: refresh ≥ 1.0× oidc-provider", "atsso Postgres ES256");
        assert_eq!(r.met, Some(false)); // 3000 / 3500
        let r = find(&rows, "Postgres: authorize + exchange ≥ 2.0× oidc-provider", "atsso Postgres ES256");
        assert_eq!(r.met, Some(false)); // 1000 / 1000
        let r = find(&rows, "SQLite: authorize + exchange ≥ 2.0× oidc-provider", "atsso SQLite RS256");
        assert_eq!(r.met, Some(true)); // 2000 / 900
    }

    #[test]
    fn userinfo_and_introspection_compare_with_the_opaque_peer() {
        let rows = targets(&fixture(), &[], None, &BTreeMap::new());
        let r = find(&rows, "Postgres: userinfo ≥ 3.0× oidc-provider", "atsso Postgres RS256");
        assert_eq!(r.pair, "atsso Postgres RS256 vs oidc-provider opaque");
        assert_eq!(r.met, Some(false)); // 29000 / 10000
        let r = find(&rows, "Postgres: introspection ≥ 3.0× oidc-provider", "atsso Postgres RS256");
        assert_eq!(r.met, Some(true)); // 20000 / 6000
                                       // The token-path ES256 run has no userinfo row.
        assert!(!rows.iter().any(|r| r.target.contains("userinfo") && r.pair.starts_with("atsso Postgres ES256")));
    }

    #[test]
    fn signing_limit_divides_by_the_signatures_of_the_pair() {
        assert_eq!(signing_limit("rs256", 10000.0, None), 5000.0);
        assert_eq!(signing_limit("es256", 10000.0, None), 10000.0);
        // 1/10000 + 1/40000 s per response
        assert_eq!(signing_limit("es256", 10000.0, Some(40000.0)), 8000.0);
        let rsa = json!({"sign_per_s": 10000.0});
        let rows = targets(&fixture(), &[], Some(&rsa), &BTreeMap::new());
        let r = find(&rows, "SQLite: code exchange vs signing limit", "atsso SQLite RS256");
        assert_eq!(r.met, Some(true)); // 3000 of 5000 = 60 %
        let r = find(&rows, "SQLite: code exchange p99", "atsso SQLite RS256");
        assert_eq!(r.met, Some(true));
        let r = find(&rows, "SQLite: refresh p99", "atsso SQLite RS256");
        assert_eq!(r.met, Some(false)); // 25 ms
    }

    #[test]
    fn growth_compares_with_the_empty_run_of_the_same_store_and_rss_is_bounded() {
        let growth = vec![
            run(
                "atsso SQLite RS256 (seeded)",
                json!({"role": "growth", "store": "sqlite", "pair": "rs256"}),
                vec![sc("refresh", 2400.0, 20.0), sc("userinfo", 70000.0, 2.0)],
            ),
            run(
                "atsso Postgres RS256 (seeded)",
                json!({"role": "growth", "store": "postgres", "pair": "rs256"}),
                vec![sc("refresh", 1800.0, 20.0)],
            ),
        ];
        let rss = BTreeMap::from([("atsso SQLite RS256".to_string(), 40_000), ("atsso Postgres RS256".to_string(), 49_000)]);
        let rows = targets(&fixture(), &growth, None, &rss);
        let r = find(&rows, "SQLite: refresh with stored grants", "atsso SQLite RS256 (seeded)");
        assert_eq!(r.met, Some(true)); // 2400 / 2900: 17 % loss
        let r = find(&rows, "SQLite: userinfo with stored grants", "atsso SQLite RS256 (seeded)");
        assert_eq!(r.met, Some(false)); // 30 % loss
        let r = find(&rows, "Postgres: refresh with stored grants", "atsso Postgres RS256 (seeded)");
        assert_eq!(r.met, Some(true)); // 1800 / 1900
        assert_eq!(find(&rows, "peak RSS", "atsso SQLite RS256").met, Some(true));
        // 49,000 KiB = 50.2 MB
        assert_eq!(find(&rows, "peak RSS", "atsso Postgres RS256").met, Some(false));
        assert_eq!(find(&rows, "peak RSS", "atsso Postgres ES256").met, None);
    }

    #[test]
    fn legacy_runs_without_meta_keep_first_run_ratios_and_no_targets() {
        let runs = vec![run("atsso", Value::Null, vec![]), run("oidc-provider", Value::Null, vec![])];
        assert_eq!(ratio_columns(&runs), vec![(0, 1)]);
        assert!(targets(&runs, &[], None, &BTreeMap::new()).is_empty());
        assert_eq!(ratio_columns(&fixture()), vec![(0, 3), (1, 4), (2, 3)]);
    }
}
