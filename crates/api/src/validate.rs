//! Validation of free text and integers shared by the handlers, written to agree exactly with
//! what the OpenAPI schema promises (schemathesis checks that every schema-valid request is
//! accepted): "blank" uses ECMA-262's `\s` (the JSON Schema regex dialect), not Rust's
//! `char::is_whitespace` (they differ on U+0085 and U+FEFF), and U+0000 is refused because
//! PostgreSQL text cannot hold it.

use crate::error::ApiError;

/// JSON Schema pattern of a non-blank text without U+0000 (keep in sync with [`is_space`]).
pub const NON_BLANK_PATTERN: &str = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff][^\\u0000]*$";

/// ECMA-262 `\s`.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// `field` must be 1..=`max_chars` characters, not blank, without U+0000.
pub fn text(field: &str, s: &str, max_chars: usize) -> Result<(), ApiError> {
    let n = s.chars().count();
    if n == 0 || n > max_chars || s.chars().all(is_space) {
        return Err(ApiError::unprocessable(format!("{field} must be 1-{max_chars} characters and not blank")));
    }
    if s.contains('\0') {
        return Err(ApiError::unprocessable(format!("{field} must not contain U+0000")));
    }
    Ok(())
}

/// An optional non-negative integer, written exactly (no fraction, no exponent: see
/// [`crate::ledger::de`], the one integer parser of request bodies).
pub use crate::ledger::de::opt_u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_nul_rules() {
        assert!(text("x", "a", 5).is_ok());
        assert!(text("x", " a ", 5).is_ok());
        assert!(text("x", "\u{85}", 5).is_ok(), "U+0085 is not ECMA whitespace");
        for bad in ["", " ", "\u{feff}", "\t\n", "a\0", "abcdef"] {
            assert!(text("x", bad, 5).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn integers_only_without_fraction_or_exponent() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "opt_u64")]
            v: Option<u64>,
        }
        let p = |s: &str| serde_json::from_str::<T>(s).map(|t| t.v);
        assert_eq!(p(r#"{"v": 42}"#).ok(), Some(Some(42)));
        assert!(p(r#"{"v": 42.0}"#).is_err());
        assert!(p(r#"{"v": 4.2e1}"#).is_err());
        assert_eq!(p(r#"{"v": null}"#).ok(), Some(None));
        assert_eq!(p(r#"{}"#).ok(), Some(None));
        assert!(p(r#"{"v": 4.5}"#).is_err());
        assert!(p(r#"{"v": -1}"#).is_err());
        assert!(p(r#"{"v": "1"}"#).is_err());
    }
}
