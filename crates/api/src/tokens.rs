//! Opaque bearer tokens: 32 random bytes, shown once, stored only as SHA-256.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix that makes leaked tokens recognizable by secret scanners.
pub const TOKEN_PREFIX: &str = "ft_";
/// Longest accepted `Authorization` token (anything longer is not ours).
pub const TOKEN_MAX_LEN: usize = 64;
/// Longest staff / customer token lifetime (30 days).
pub const TOKEN_MAX_TTL_SECS: u64 = 30 * 24 * 3600;
/// Default customer token lifetime (24 hours).
pub const TOKEN_DEFAULT_TTL_SECS: u64 = 24 * 3600;

/// A fresh token (the only time its clear text exists) and its hash.
pub fn generate() -> (String, [u8; 32]) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let hash = hash(&token);
    (token, hash)
}

/// SHA-256 of the token text (what the database stores and looks up).
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses a duration like `8h`, `15m`, `30s`, `7d` into seconds (bounded by the token cap).
pub fn parse_ttl_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?} (examples: 30m, 8h, 7d)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid duration unit in {s:?} (use s, m, h or d)")),
    };
    let secs = n.checked_mul(mult).ok_or_else(|| format!("duration {s:?} is too large"))?;
    if secs == 0 {
        return Err("duration must be positive".into());
    }
    if secs > TOKEN_MAX_TTL_SECS {
        return Err(format!("duration {s:?} exceeds the maximum of 30d"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_bounded() {
        let (a, ha) = generate();
        let (b, hb) = generate();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() <= TOKEN_MAX_LEN);
        assert_eq!(hash(&a), ha);
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl_secs("8h"), Ok(28_800));
        assert_eq!(parse_ttl_secs("15m"), Ok(900));
        assert_eq!(parse_ttl_secs("30d"), Ok(2_592_000));
        for bad in ["", "h", "8", "8x", "0h", "31d", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl_secs(bad).is_err(), "{bad:?}");
        }
    }
}
