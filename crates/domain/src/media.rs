//! Rules for user media (ID documents, selfies): kinds, content types, limits.

use std::fmt;
use std::str::FromStr;

use crate::access::UnknownName;

/// The largest accepted upload (10 MiB): ID scans and selfies fit; anything
/// bigger is refused before it is stored.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;

/// Default signed-URL lifetime (15 minutes).
pub const SIGNED_URL_DEFAULT_TTL_SECS: u64 = 15 * 60;

/// Hard cap on a signed-URL lifetime (7 days, like GCS V4).
pub const SIGNED_URL_MAX_TTL_SECS: u64 = 7 * 24 * 3600;

/// What a media object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Passport, ID card, driving licence.
    IdDocument,
    /// A photo of the customer's face.
    Selfie,
}

impl MediaKind {
    /// Every kind.
    pub const ALL: [MediaKind; 2] = [MediaKind::IdDocument, MediaKind::Selfie];

    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MediaKind::IdDocument => "id_document",
            MediaKind::Selfie => "selfie",
        }
    }

    /// Content types accepted for this kind (exact match, lower case, no parameters).
    pub const fn allowed_content_types(self) -> &'static [&'static str] {
        match self {
            MediaKind::IdDocument => &["image/jpeg", "image/png", "application/pdf"],
            MediaKind::Selfie => &["image/jpeg", "image/png"],
        }
    }

    /// Whether `content_type` is accepted for this kind.
    pub fn accepts(self, content_type: &str) -> bool {
        self.allowed_content_types().contains(&content_type)
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MediaKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MediaKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName { kind: "media kind", name: s.to_owned() })
    }
}

/// Clamp a requested signed-URL lifetime: default when absent, refuse 0 and
/// anything above the hard cap.
pub fn signed_url_ttl_secs(requested: Option<u64>) -> Result<u64, String> {
    match requested {
        None => Ok(SIGNED_URL_DEFAULT_TTL_SECS),
        Some(0) => Err("ttl_secs must be at least 1".into()),
        Some(s) if s > SIGNED_URL_MAX_TTL_SECS => {
            Err(format!("ttl_secs {s} exceeds the maximum of {SIGNED_URL_MAX_TTL_SECS} (7 days)"))
        }
        Some(s) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_types() {
        for k in MediaKind::ALL {
            assert_eq!(k.as_str().parse::<MediaKind>(), Ok(k));
            assert!(k.accepts("image/jpeg"));
            assert!(!k.accepts("text/html"));
            assert!(!k.accepts("IMAGE/JPEG"), "exact match only");
        }
        assert!(!MediaKind::Selfie.accepts("application/pdf"));
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(signed_url_ttl_secs(None), Ok(900));
        assert!(signed_url_ttl_secs(Some(0)).is_err());
        assert_eq!(signed_url_ttl_secs(Some(SIGNED_URL_MAX_TTL_SECS)), Ok(SIGNED_URL_MAX_TTL_SECS));
        assert!(signed_url_ttl_secs(Some(SIGNED_URL_MAX_TTL_SECS + 1)).is_err());
    }
}
