//! Scenario runner: N concurrent workers, each with its own keep-alive
//! connection, a warm-up, then a measured window.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::raw::Http;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Barrier;

use crate::flow::{self, Bearer, Env, Jar, Target, Tokens};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Discovery,
    Jwks,
    Authorize,
    Token,
    Cycle,
    Refresh,
    Userinfo,
    Introspect,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Discovery,
        Scenario::Jwks,
        Scenario::Authorize,
        Scenario::Token,
        Scenario::Cycle,
        Scenario::Refresh,
        Scenario::Userinfo,
        Scenario::Introspect,
    ];
    pub fn key(self) -> &'static str {
        match self {
            Scenario::Discovery => "discovery",
            Scenario::Jwks => "jwks",
            Scenario::Authorize => "authorize",
            Scenario::Token => "token",
            Scenario::Cycle => "cycle",
            Scenario::Refresh => "refresh",
            Scenario::Userinfo => "userinfo",
            Scenario::Introspect => "introspect",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Discovery => "discovery (GET)",
            Scenario::Jwks => "JWKS (GET)",
            Scenario::Authorize => "authorize, SSO session + remembered consent → code",
            Scenario::Token => "code exchange (basic auth, PKCE)",
            Scenario::Cycle => "cycle: authorize + code exchange",
            Scenario::Refresh => "refresh grant (rotating)",
            Scenario::Userinfo => "userinfo (Bearer)",
            Scenario::Introspect => "introspection",
        }
    }
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                out.extend(Scenario::ALL);
                continue;
            }
            let sc = Scenario::ALL
                .into_iter()
                .find(|x| x.key() == part || (part == "exchange" && *x == Scenario::Token))
                .ok_or_else(|| format!("unknown scenario {part:?}: all, {}", Scenario::ALL.map(|x| x.key()).join(", ")))?;
            out.push(sc);
        }
        if out.is_empty() {
            return Err("no scenario".into());
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub label: String,
    pub rps: f64,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// HTTP requests per authorize (1 = straight 302 to the client).
    pub avg_hops: Option<f64>,
    /// RS256 signatures per timed request (id_token, JWT access/refresh
    /// tokens seen in the token responses).
    pub rs256_per_request: Option<f64>,
    /// Seconds over which `rps` was measured.
    pub measured_s: f64,
    pub note: Option<String>,
    /// Set when the scenario could not run (e.g. no introspection endpoint).
    pub skipped: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunResult {
    pub name: String,
    pub issuer: String,
    pub notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_format: Option<String>,
    /// `--meta KEY=VALUE` of the run (role, store, pair…), read by the report.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    pub concurrency: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub scenarios: Vec<ScenarioResult>,
}

/// Worker i's browser cookie jar, kept across scenarios (a session cookie
/// rotated in one scenario is the one the next scenario must send).
type Jars = Arc<Vec<Mutex<Option<Jar>>>>;

fn take_jar(jars: &Jars, i: usize) -> Jar {
    jars[i].lock().unwrap().take().expect("jar in use")
}

fn put_jar(jars: &Jars, i: usize, jar: Jar) {
    *jars[i].lock().unwrap() = Some(jar);
}

/// One worker's tally.
struct Tally {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    hops: u64,
    hop_samples: u64,
    rotated: u64,
    not_rotated: u64,
    renewals: u64,
    sigs: u64,
    sig_samples: u64,
    signed: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram"),
            errors: 0,
            first_error: None,
            hops: 0,
            hop_samples: 0,
            rotated: 0,
            not_rotated: 0,
            renewals: 0,
            sigs: 0,
            sig_samples: 0,
            signed: None,
        }
    }
    fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 120_000_000);
        let _ = self.hist.record(us);
    }
    fn error(&mut self, e: String, counted: bool) {
        if counted {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
    fn merge(&mut self, o: Tally) {
        let _ = self.hist.add(&o.hist);
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.hops += o.hops;
        self.hop_samples += o.hop_samples;
        self.rotated += o.rotated;
        self.not_rotated += o.not_rotated;
        self.renewals += o.renewals;
        self.sigs += o.sigs;
        self.sig_samples += o.sig_samples;
        if self.signed.is_none() {
            self.signed = o.signed;
        }
    }
}

pub async fn run_all(
    target: Target,
    scenarios: Vec<Scenario>,
    cfg: RunConfig,
    json: Option<PathBuf>,
    meta: BTreeMap<String, String>,
) -> Result<(), String> {
    let env = Arc::new(Env::resolve(target, cfg.timeout).await?);
    eprintln!(
        "target {} ({}): concurrency {}, warm-up {:?}, measured {:?} per scenario",
        env.target.name, env.target.issuer, cfg.concurrency, cfg.warmup, cfg.duration
    );
    let jars: Jars = Arc::new((0..cfg.concurrency).map(|i| Mutex::new(Some(env.jar_for(i)))).collect());
    let mut results = Vec::new();
    for sc in scenarios {
        eprintln!("-- {} ...", sc.key());
        let r = run_scenario(sc, env.clone(), cfg, jars.clone()).await;
        eprintln!("   {}", one_line(&r));
        results.push(r);
    }
    let run = RunResult {
        name: env.target.name.clone(),
        issuer: env.target.issuer.clone(),
        notes: env.target.notes.clone(),
        access_token_format: env.target.access_token_format.clone(),
        meta,
        concurrency: cfg.concurrency,
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s: cfg.warmup.as_secs_f64(),
        scenarios: results,
    };
    print_table(&run);
    if let Some(path) = json {
        let s = serde_json::to_string_pretty(&run).map_err(|e| e.to_string())?;
        std::fs::write(&path, s).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn one_line(r: &ScenarioResult) -> String {
    if let Some(s) = &r.skipped {
        return format!("skipped: {s}");
    }
    format!(
        "{:.1} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, {} errors{}",
        r.rps,
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.errors,
        r.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    )
}

fn print_table(run: &RunResult) {
    println!();
    println!(
        "## {} — {} concurrent, {:.0}s measured (+{:.0}s warm-up) per scenario",
        run.name, run.concurrency, run.duration_s, run.warmup_s
    );
    println!();
    println!("| scenario | req/s | p50 ms | p90 ms | p99 ms | errors | notes |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &run.scenarios {
        if let Some(s) = &r.skipped {
            println!("| {} | – | – | – | – | – | skipped: {} |", r.scenario, s);
            continue;
        }
        let mut notes = Vec::new();
        if let Some(h) = r.avg_hops {
            notes.push(format!("{h:.1} HTTP requests per authorize"));
        }
        if let Some(n) = &r.note {
            notes.push(n.clone());
        }
        if let Some(e) = &r.first_error {
            notes.push(format!("first error: {}", e.replace('|', "/")));
        }
        println!(
            "| {} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.scenario,
            r.rps,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.errors,
            notes.join("; ")
        );
    }
    println!();
}

fn finish(sc: Scenario, t: Tally, measured: Duration, note: Option<String>) -> ScenarioResult {
    let h = &t.hist;
    let ms = |us: u64| us as f64 / 1000.0;
    let count = h.len();
    let secs = measured.as_secs_f64().max(1e-9);
    let mut notes: Vec<String> = note.into_iter().collect();
    if t.rotated + t.not_rotated > 0 {
        notes.push(format!("refresh token rotated on {}/{} responses", t.rotated, t.rotated + t.not_rotated));
    }
    if let Some(sg) = &t.signed {
        notes.push(format!("signed tokens per response: {}", if sg.is_empty() { "none" } else { sg }));
    }
    if t.renewals > 0 {
        notes.push(format!("{} untimed token renewals", t.renewals));
    }
    ScenarioResult {
        scenario: sc.key().into(),
        label: sc.label().into(),
        rps: count as f64 / secs,
        count,
        p50_ms: if count > 0 { ms(h.value_at_quantile(0.50)) } else { 0.0 },
        p90_ms: if count > 0 { ms(h.value_at_quantile(0.90)) } else { 0.0 },
        p99_ms: if count > 0 { ms(h.value_at_quantile(0.99)) } else { 0.0 },
        mean_ms: if count > 0 { h.mean() / 1000.0 } else { 0.0 },
        max_ms: if count > 0 { ms(h.max()) } else { 0.0 },
        errors: t.errors,
        first_error: t.first_error,
        avg_hops: (t.hop_samples > 0).then(|| t.hops as f64 / t.hop_samples as f64),
        rs256_per_request: (t.sig_samples > 0).then(|| t.sigs as f64 / t.sig_samples as f64),
        measured_s: secs,
        note: if notes.is_empty() { None } else { Some(notes.join("; ")) },
        skipped: None,
    }
}

fn skipped(sc: Scenario, why: String) -> ScenarioResult {
    ScenarioResult {
        scenario: sc.key().into(),
        label: sc.label().into(),
        rps: 0.0,
        count: 0,
        p50_ms: 0.0,
        p90_ms: 0.0,
        p99_ms: 0.0,
        mean_ms: 0.0,
        max_ms: 0.0,
        errors: 0,
        first_error: None,
        avg_hops: None,
        rs256_per_request: None,
        measured_s: 0.0,
        note: None,
        skipped: Some(why),
    }
}

async fn run_scenario(sc: Scenario, env: Arc<Env>, cfg: RunConfig, jars: Jars) -> ScenarioResult {
    match sc {
        Scenario::Userinfo if env.disco.userinfo_endpoint.is_none() => {
            return skipped(sc, "provider publishes no userinfo_endpoint".into())
        }
        Scenario::Introspect if env.disco.introspection_endpoint.is_none() => {
            return skipped(sc, "provider publishes no introspection_endpoint".into())
        }
        Scenario::Token => return run_exchange_rounds(env, cfg, jars).await,
        _ => {}
    }
    // Per-worker set-up (untimed): a connection each and, where needed, tokens.
    let needs_tokens = matches!(sc, Scenario::Refresh | Scenario::Userinfo | Scenario::Introspect);
    let mut setups = Vec::new();
    for i in 0..cfg.concurrency {
        let env = env.clone();
        let jars = jars.clone();
        setups.push(tokio::spawn(async move {
            let mut c = flow::new_client(cfg.timeout)?;
            let mut jar = take_jar(&jars, i);
            let mut tokens = Tokens::default();
            if needs_tokens {
                let mut last = String::new();
                // Three tries; more, with a pause, while the provider says it is busy
                // (HTTP 503, e.g. atsso's bound on concurrent client-secret checks when
                // all workers set up at once on a cold server).
                for attempt in 0..12u64 {
                    match flow::bootstrap(&mut c, &env, &mut jar).await {
                        Ok(t) => {
                            tokens = t;
                            last.clear();
                            break;
                        }
                        Err(e) => {
                            let busy = e.contains("HTTP 503");
                            last = e;
                            if !busy && attempt >= 2 {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
                        }
                    }
                }
                if !last.is_empty() {
                    put_jar(&jars, i, jar);
                    return Err(format!("worker set-up (authorize + exchange): {last}"));
                }
                if sc == Scenario::Refresh && tokens.refresh_token.is_none() {
                    put_jar(&jars, i, jar);
                    return Err("no refresh_token issued (offline_access / consent?)".to_string());
                }
            }
            Ok::<_, String>((i, c, jar, tokens))
        }));
    }
    let mut workers = Vec::new();
    let mut setup_err = None;
    for s in setups {
        match s.await {
            Ok(Ok(w)) => workers.push(w),
            Ok(Err(e)) => setup_err = Some(e),
            Err(e) => setup_err = Some(e.to_string()),
        }
    }
    if let Some(e) = setup_err {
        for (i, _, jar, _) in workers {
            put_jar(&jars, i, jar);
        }
        return skipped(sc, e);
    }

    let start = Instant::now();
    let ws = start + cfg.warmup;
    let we = ws + cfg.duration;
    let mut handles = Vec::new();
    for (i, c, jar, tokens) in workers {
        let env = env.clone();
        let jars = jars.clone();
        handles.push(tokio::spawn(async move {
            let (t, jar) = worker(sc, c, jar, tokens, env, ws, we).await;
            put_jar(&jars, i, jar);
            t
        }));
    }
    let mut total = Tally::new();
    for h in handles {
        match h.await {
            Ok(t) => total.merge(t),
            Err(e) => total.error(format!("worker panicked: {e}"), true),
        }
    }
    finish(sc, total, cfg.duration, None)
}

/// Renew a worker's tokens without timing: refresh if possible, else a new
/// authorize + exchange.
async fn renew(c: &mut Http, env: &Env, jar: &mut Jar, tokens: &mut Tokens) -> Result<(), String> {
    if let Some(rt) = tokens.refresh_token.clone() {
        if let Ok(t) = flow::refresh(c, env, &rt).await {
            let rt_new = t.refresh_token.clone().or(Some(rt));
            *tokens = Tokens { refresh_token: rt_new, ..t };
            return Ok(());
        }
    }
    *tokens = flow::bootstrap(c, env, jar).await?;
    Ok(())
}

async fn worker(sc: Scenario, mut c: Http, mut jar: Jar, mut tokens: Tokens, env: Arc<Env>, ws: Instant, we: Instant) -> (Tally, Jar) {
    let mut t = Tally::new();
    let jwks = env.disco.jwks_uri.clone();
    let disco = env.discovery_url.clone();
    // Static documents go through the lean GET (see raw.rs); the flows keep reqwest.
    let mut lean_get = match sc {
        Scenario::Discovery => Some(crate::raw::RawGet::new(&disco)),
        Scenario::Jwks => Some(crate::raw::RawGet::new(&jwks)),
        _ => None,
    };
    loop {
        let now = Instant::now();
        if now >= we {
            break;
        }
        // Token upkeep happens outside the timed part.
        if matches!(sc, Scenario::Userinfo | Scenario::Introspect) {
            let expiring = tokens.expires_at.is_some_and(|e| e <= now + Duration::from_secs(2));
            if expiring {
                t.renewals += 1;
                if let Err(e) = renew(&mut c, &env, &mut jar, &mut tokens).await {
                    t.error(format!("renewing tokens: {e}"), Instant::now() >= ws);
                    continue;
                }
            }
        }
        let t0 = Instant::now();
        // Ok((hops of an authorize, RS256 signatures in a token response))
        let res: Result<(Option<u32>, Option<u32>), String> = match sc {
            Scenario::Discovery | Scenario::Jwks => match lean_get.as_mut() {
                Some(Ok(get)) => match tokio::time::timeout(Duration::from_secs(10), get.get()).await {
                    Ok(result) => result.map(|_| (None, None)),
                    Err(_) => Err("GET: timed out".into()),
                },
                Some(Err(e)) => Err(e.clone()),
                None => Err("no lean GET for this scenario".into()),
            },
            Scenario::Authorize => flow::authorize(&mut c, &env, &mut jar).await.map(|code| (Some(code.hops), None)),
            Scenario::Cycle => match flow::authorize(&mut c, &env, &mut jar).await {
                Ok(code) => flow::exchange(&mut c, &env, &code).await.map(|tk| {
                    t.signed.get_or_insert(tk.signed);
                    (Some(code.hops), Some(tk.rs256))
                }),
                Err(e) => Err(e),
            },
            Scenario::Refresh => {
                let rt = tokens.refresh_token.clone().unwrap_or_default();
                match flow::refresh(&mut c, &env, &rt).await {
                    Ok(new) => {
                        let in_window = Instant::now() >= ws;
                        match &new.refresh_token {
                            Some(n) if *n != rt => {
                                if in_window {
                                    t.rotated += 1
                                }
                            }
                            _ => {
                                if in_window {
                                    t.not_rotated += 1
                                }
                            }
                        }
                        let sigs = new.rs256;
                        t.signed.get_or_insert_with(|| new.signed.clone());
                        let rt_new = new.refresh_token.clone().or(Some(rt));
                        tokens = Tokens { refresh_token: rt_new, ..new };
                        Ok((None, Some(sigs)))
                    }
                    Err(e) => {
                        // The chain is broken: start a new one (untimed).
                        if let Ok(fresh) = flow::bootstrap(&mut c, &env, &mut jar).await {
                            tokens = fresh;
                        }
                        Err(e)
                    }
                }
            }
            Scenario::Userinfo | Scenario::Introspect => {
                let r = if sc == Scenario::Userinfo {
                    flow::userinfo(&mut c, &env, &tokens.access_token).await
                } else {
                    flow::introspect(&mut c, &env, &tokens.access_token).await
                };
                match r {
                    Ok(Bearer::Ok) => Ok((None, None)),
                    Ok(Bearer::Unauthorized(why)) => {
                        t.renewals += 1;
                        if let Err(e) = renew(&mut c, &env, &mut jar, &mut tokens).await {
                            t.error(format!("renewing after {why}: {e}"), Instant::now() >= ws);
                        }
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            Scenario::Token => unreachable!("run_exchange_rounds"),
        };
        let end = Instant::now();
        if end < ws || end > we {
            if let Err(e) = res {
                // Outside the window: remember the text, don't count.
                t.error(e, false);
                if end < ws {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            continue;
        }
        match res {
            Ok((hops, sigs)) => {
                t.record(end - t0);
                if let Some(h) = hops {
                    t.hops += h as u64;
                    t.hop_samples += 1;
                }
                if let Some(s) = sigs {
                    t.sigs += s as u64;
                    t.sig_samples += 1;
                }
            }
            Err(e) => {
                t.error(e, true);
                // Don't spin on a failing endpoint.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    (t, jar)
}

/// Code-exchange throughput in isolation: rounds of (every worker authorizes
/// `BATCH` codes, untimed) → barrier → (every worker exchanges its codes,
/// timed) → barrier. req/s = exchanges / summed wall time of the exchange
/// phases; rounds that start before the warm-up has elapsed are not measured.
async fn run_exchange_rounds(env: Arc<Env>, cfg: RunConfig, jars: Jars) -> ScenarioResult {
    const BATCH: usize = 8;
    let n = cfg.concurrency;
    let barrier = Arc::new(Barrier::new(n));
    // Per round: (earliest exchange start, latest exchange end).
    type RoundSpan = (Option<Instant>, Option<Instant>);
    let spans: Arc<Mutex<Vec<RoundSpan>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    // Safety stop: never run longer than warm-up + 6 × duration in total.
    let hard_stop = started + cfg.warmup + cfg.duration * 6;
    let mut clients = Vec::new();
    for i in 0..n {
        match flow::new_client(cfg.timeout) {
            Ok(c) => clients.push((i, c)),
            Err(e) => return skipped(Scenario::Token, e),
        }
    }
    let mut handles = Vec::new();
    for (i, mut c) in clients {
        let mut jar = take_jar(&jars, i);
        let jars = jars.clone();
        let env = env.clone();
        let barrier = barrier.clone();
        let spans = spans.clone();
        handles.push(tokio::spawn(async move {
            let mut t = Tally::new();
            let mut round = 0usize;
            let mut measured = false;
            let mut measured_rounds: Vec<usize> = Vec::new();
            let measured_time = loop {
                let mut codes = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    match flow::authorize(&mut c, &env, &mut jar).await {
                        Ok(code) => codes.push(code),
                        Err(e) => t.error(format!("authorize (untimed): {e}"), measured),
                    }
                }
                barrier.wait().await;
                let mut first = None;
                let mut last = None;
                for code in &codes {
                    let t0 = Instant::now();
                    first.get_or_insert(t0);
                    let r = flow::exchange(&mut c, &env, code).await;
                    let end = Instant::now();
                    last = Some(end);
                    match r {
                        Ok(tk) if measured => {
                            t.record(end - t0);
                            t.sigs += tk.rs256 as u64;
                            t.signed.get_or_insert(tk.signed);
                            t.sig_samples += 1;
                        }
                        Ok(_) => {}
                        Err(e) => t.error(e, measured),
                    }
                }
                {
                    let mut s = spans.lock().unwrap();
                    if s.len() <= round {
                        s.resize(round + 1, (None, None));
                    }
                    let e = &mut s[round];
                    if let Some(f) = first {
                        e.0 = Some(e.0.map_or(f, |x: Instant| x.min(f)));
                    }
                    if let Some(l) = last {
                        e.1 = Some(e.1.map_or(l, |x: Instant| x.max(l)));
                    }
                }
                barrier.wait().await;
                // Every worker sees the same completed rounds 0..=round here,
                // so they all take the same decisions.
                let span = |x: &(Option<Instant>, Option<Instant>)| -> Duration {
                    match x {
                        (Some(a), Some(b)) => b.saturating_duration_since(*a),
                        _ => Duration::ZERO,
                    }
                };
                let (round_end, sum) = {
                    let s = spans.lock().unwrap();
                    if measured {
                        measured_rounds.push(round);
                    }
                    let sum: Duration = measured_rounds.iter().map(|r| span(&s[*r])).sum();
                    (s[round].1, sum)
                };
                let Some(round_end) = round_end else {
                    // Nobody exchanged anything: authorize is failing.
                    break sum;
                };
                if sum >= cfg.duration || round_end >= hard_stop {
                    break sum;
                }
                measured = round_end >= started + cfg.warmup;
                round += 1;
            };
            put_jar(&jars, i, jar);
            (t, measured_time)
        }));
    }
    let mut total = Tally::new();
    let mut measured = Duration::ZERO;
    for h in handles {
        match h.await {
            Ok((t, m)) => {
                total.merge(t);
                measured = m;
            }
            Err(e) => total.error(format!("worker panicked: {e}"), true),
        }
    }
    let note = format!(
        "measured over {:.1}s of exchange phases (rounds of {BATCH} untimed authorizes per worker, then {BATCH} timed exchanges)",
        measured.as_secs_f64()
    );
    finish(Scenario::Token, total, measured, Some(note))
}
