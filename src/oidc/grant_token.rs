//! What our refresh tokens and access-token ids say: the grant family and its generation.
//!
//! A refresh token is `{family_id}.{generation}.{mac}`, the MAC an HMAC under a key derived from
//! the master key (`Sealer::mac`): every node recognises it, nobody without the master key can
//! make one, and the database keeps no hash of it — only the family's current generation. A
//! presented older generation is a reuse. (Tokens from before families are 43 random characters
//! without dots, still found by their hash: `Presented::Legacy`.)
//!
//! An access token's `jti` is `{family_id}.{generation}`: unique per token response, and it names
//! the family whose liveness decides whether the token is still active.
use crate::crypto::{constant_time_eq, seal::Sealer, sha256_b64};

/// A refresh token as presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// A family token whose MAC verified.
    Family { family_id: String, generation: i64 },
    /// A token from before grant families: look it up by this hash.
    Legacy { token_hash: String },
    /// Not one of our refresh tokens (a bad MAC, a malformed or oversized string).
    Unknown,
}

/// Family ids are base64url (`random_token`), so a dot never appears in one.
const SEPARATOR: char = '.';
/// Longest token we look at: a family id, a generation and a MAC fit well within this.
const MAX_LEN: usize = 256;

pub fn refresh_token(sealer: &Sealer, family_id: &str, generation: i64) -> String {
    format!("{family_id}{SEPARATOR}{generation}{SEPARATOR}{}", mac(sealer, family_id, generation))
}

pub fn parse_refresh_token(sealer: &Sealer, token: &str) -> Presented {
    if token.is_empty() || token.len() > MAX_LEN {
        return Presented::Unknown;
    }
    let mut parts = token.split(SEPARATOR);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), None, _, _) => Presented::Legacy { token_hash: sha256_b64(token) },
        (Some(family_id), Some(generation), Some(presented_mac), None) if !family_id.is_empty() => {
            let Some(generation) = parse_generation(generation) else {
                return Presented::Unknown;
            };
            if constant_time_eq(mac(sealer, family_id, generation).as_bytes(), presented_mac.as_bytes()) {
                Presented::Family { family_id: family_id.to_owned(), generation }
            } else {
                Presented::Unknown
            }
        }
        _ => Presented::Unknown,
    }
}

pub fn access_token_jti(family_id: &str, generation: i64) -> String {
    format!("{family_id}{SEPARATOR}{generation}")
}

/// The family an access token's `jti` names; None for a token from before grant families.
pub fn family_of_jti(jti: &str) -> Option<&str> {
    let (family_id, generation) = jti.split_once(SEPARATOR)?;
    (!family_id.is_empty() && parse_generation(generation).is_some()).then_some(family_id)
}

/// A generation is a non-negative decimal without sign or leading zeros (one spelling per value,
/// so one MAC per token).
fn parse_generation(text: &str) -> Option<i64> {
    let canonical = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn mac(sealer: &Sealer, family_id: &str, generation: i64) -> String {
    sealer.mac(&format!("refresh-token:{family_id}:{generation}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::from_key_bytes(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_refresh_token_names_its_family_and_generation() {
        let token = refresh_token(&sealer(), "fam_-1", 42);
        assert_eq!(parse_refresh_token(&sealer(), &token), Presented::Family { family_id: "fam_-1".into(), generation: 42 });
    }

    #[test]
    fn a_changed_generation_family_or_mac_is_unknown() {
        let token = refresh_token(&sealer(), "fam", 3);
        let (family, rest) = token.split_once('.').unwrap();
        let (_, mac) = rest.split_once('.').unwrap();
        for forged in
            [format!("{family}.4.{mac}"), format!("other.3.{mac}"), format!("{family}.3.{}", &mac[1..]), format!("{family}.03.{mac}")]
        {
            assert_eq!(parse_refresh_token(&sealer(), &forged), Presented::Unknown, "{forged}");
        }
        let other_master_key = Sealer::from_key_bytes(&[8u8; 32]).unwrap();
        assert_eq!(parse_refresh_token(&other_master_key, &token), Presented::Unknown);
    }

    #[test]
    fn malformed_tokens_are_unknown_and_dotless_ones_legacy() {
        for bad in ["", ".1.x", "a.b.c", "a.-1.x", "a.1", "a.1.x.y", &"a".repeat(300)] {
            assert_eq!(parse_refresh_token(&sealer(), bad), Presented::Unknown, "{bad}");
        }
        assert_eq!(parse_refresh_token(&sealer(), "abc"), Presented::Legacy { token_hash: sha256_b64("abc") });
    }

    #[test]
    fn an_access_token_jti_names_its_family() {
        assert_eq!(family_of_jti(&access_token_jti("fam", 7)), Some("fam"));
        assert_eq!(family_of_jti("Zm9vYmFyYmF6cXV4"), None, "a jti from before grant families");
        assert_eq!(family_of_jti("fam.x"), None);
    }
}
