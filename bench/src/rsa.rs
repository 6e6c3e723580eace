//! The physical limit: RS256 (RSA-2048 PKCS#1 v1.5 SHA-256) signatures per
//! second on this machine, from `openssl speed -multi N -seconds S rsa2048`.

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
}

pub fn main(multi: usize, seconds: u32, json: Option<PathBuf>) -> i32 {
    let procs = if multi == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        multi
    };
    match measure(procs, seconds) {
        Ok(r) => {
            println!(
                "RS256 limit ({}): {:.1} sign/s, {:.1} verify/s",
                r.command, r.sign_per_s, r.verify_per_s
            );
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

fn measure(procs: usize, seconds: u32) -> Result<RsaResult, String> {
    let args = vec![
        "speed".to_string(),
        "-multi".into(),
        procs.to_string(),
        "-seconds".into(),
        seconds.to_string(),
        "rsa2048".into(),
    ];
    let command = format!("openssl {}", args.join(" "));
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!(
            "{command}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (sign, verify) =
        parse(&text).ok_or_else(|| format!("cannot parse output of {command}:\n{text}"))?;
    let version = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(RsaResult {
        command,
        openssl_version: version,
        processes: procs,
        sign_per_s: sign,
        verify_per_s: verify,
    })
}

/// `rsa 2048 bits 0.002831s 0.000067s    353.2  14880.5` (OpenSSL 3; 1.1 also
/// has encrypt/decrypt columns after): the first two figures without an `s`
/// suffix are sign/s and verify/s. With `-multi` the summary line is last.
fn parse(text: &str) -> Option<(f64, f64)> {
    let line = text
        .lines()
        .rfind(|l| l.trim_start().starts_with("rsa") && l.contains("2048 bits"))?;
    let nums: Vec<f64> = line
        .split_whitespace()
        .skip(3)
        .filter(|t| !t.ends_with('s'))
        .filter_map(|t| t.parse().ok())
        .collect();
    Some((*nums.first()?, *nums.get(1)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_openssl3() {
        let t = "                  sign    verify    sign/s verify/s\nrsa 2048 bits 0.002831s 0.000067s    353.2  14880.5\n";
        assert_eq!(super::parse(t), Some((353.2, 14880.5)));
    }
}
