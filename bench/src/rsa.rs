//! The physical limit: RS256 (RSA-2048 PKCS#1 v1.5 SHA-256) signatures per
//! second on this machine, from `openssl speed -multi N -seconds S rsa2048`,
//! and ES256 (ECDSA P-256) from `openssl speed … ecdsap256`.

use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;

#[derive(Serialize)]
struct RsaResult {
    command: String,
    openssl_version: String,
    processes: usize,
    sign_per_s: f64,
    verify_per_s: f64,
    /// `openssl speed -multi N -seconds S ecdsap256` (None if that failed).
    ecdsa_command: Option<String>,
    ecdsa_p256_sign_per_s: Option<f64>,
    ecdsa_p256_verify_per_s: Option<f64>,
}

pub fn main(multi: usize, seconds: u32, json: Option<PathBuf>) -> i32 {
    let procs = if multi == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { multi };
    match measure(procs, seconds) {
        Ok(r) => {
            println!("RS256 limit ({}): {:.1} sign/s, {:.1} verify/s", r.command, r.sign_per_s, r.verify_per_s);
            match r.ecdsa_p256_sign_per_s {
                Some(s) => println!("ES256 ({}): {s:.1} sign/s", r.ecdsa_command.as_deref().unwrap_or("")),
                None => eprintln!("rsa: no ecdsap256 figure (openssl speed ecdsap256 failed)"),
            }
            if let Some(p) = json {
                let s = serde_json::to_string_pretty(&r).expect("json");
                if let Err(e) = std::fs::write(&p, s) {
                    eprintln!("{}: {e}", p.display());
                    return 1;
                }
            }
            0
        }
        Err(e) => {
            eprintln!("rsa: {e}");
            1
        }
    }
}

/// Runs `openssl speed -multi P -seconds S ALG`; returns the command line and its stdout.
fn speed(procs: usize, seconds: u32, alg: &str) -> Result<(String, String), String> {
    let args = vec!["speed".to_string(), "-multi".into(), procs.to_string(), "-seconds".into(), seconds.to_string(), alg.into()];
    let command = format!("openssl {}", args.join(" "));
    let out = Command::new("openssl").args(&args).output().map_err(|e| format!("running openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!("{command}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok((command, String::from_utf8_lossy(&out.stdout).to_string()))
}

fn measure(procs: usize, seconds: u32) -> Result<RsaResult, String> {
    let (command, text) = speed(procs, seconds, "rsa2048")?;
    let (sign, verify) = parse(&text).ok_or_else(|| format!("cannot parse output of {command}:\n{text}"))?;
    let ecdsa = speed(procs, seconds, "ecdsap256")
        .and_then(|(c, t)| parse_ecdsa(&t).map(|sv| (c.clone(), sv)).ok_or_else(|| format!("cannot parse output of {c}:\n{t}")));
    if let Err(e) = &ecdsa {
        eprintln!("rsa: {e}");
    }
    let ecdsa = ecdsa.ok();
    let version =
        Command::new("openssl").arg("version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    Ok(RsaResult {
        command,
        openssl_version: version,
        processes: procs,
        sign_per_s: sign,
        verify_per_s: verify,
        ecdsa_command: ecdsa.as_ref().map(|(c, _)| c.clone()),
        ecdsa_p256_sign_per_s: ecdsa.as_ref().map(|(_, (s, _))| *s),
        ecdsa_p256_verify_per_s: ecdsa.as_ref().map(|(_, (_, v))| *v),
    })
}

/// `rsa 2048 bits 0.002831s 0.000067s    353.2  14880.5` (OpenSSL 3; 1.1 also
/// has encrypt/decrypt columns after): the first two figures without an `s`
/// suffix are sign/s and verify/s. With `-multi` the summary line is last.
fn parse(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().rfind(|l| l.trim_start().starts_with("rsa") && l.contains("2048 bits"))?;
    let nums: Vec<f64> = line.split_whitespace().skip(3).filter(|t| !t.ends_with('s')).filter_map(|t| t.parse().ok()).collect();
    Some((*nums.first()?, *nums.get(1)?))
}

/// `256 bits ecdsa (nistp256)   0.0000s   0.0001s  49210.1  16131.6`: the
/// last two figures are sign/s and verify/s. With `-multi` the summary line
/// is last.
fn parse_ecdsa(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().rfind(|l| l.contains("ecdsa") && l.contains("nistp256"))?;
    let nums: Vec<f64> = line.split_whitespace().filter(|t| !t.ends_with('s')).filter_map(|t| t.parse().ok()).collect();
    match nums.as_slice() {
        [.., s, v] => Some((*s, *v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_openssl3() {
        let t = "                  sign    verify    sign/s verify/s\nrsa 2048 bits 0.002831s 0.000067s    353.2  14880.5\n";
        assert_eq!(super::parse(t), Some((353.2, 14880.5)));
    }

    #[test]
    fn parses_openssl3_ecdsa_multi() {
        let t = "Forked child 0\n+F4:0:256:0.000023:0.000070\n                              sign    verify    sign/s verify/s\n 256 bits ecdsa (nistp256)   0.0000s   0.0001s  38925.0  13544.3\n";
        assert_eq!(super::parse_ecdsa(t), Some((38925.0, 13544.3)));
        assert_eq!(super::parse_ecdsa("no figures here"), None);
    }
}
