//! The error of a verification: the token's fault (401) or the keys' (503).

use crate::jose::error::InvalidToken;
use crate::store::error::KeysUnavailable;

/// The error of [`Verifier::verify`](crate::Verifier::verify).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not acceptable (answer 401).
    #[error(transparent)]
    InvalidToken(#[from] InvalidToken),
    /// The keys to check it are unavailable (answer 503).
    #[error(transparent)]
    KeysUnavailable(#[from] KeysUnavailable),
}

impl VerifyError {
    /// Whether the fault is the token's (401) rather than ours or the provider's (503).
    pub fn is_invalid_token(&self) -> bool {
        matches!(self, Self::InvalidToken(_))
    }

    /// The HTTP status a service should answer with: 401 or 503.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidToken(_) => 401,
            Self::KeysUnavailable(_) => 503,
        }
    }
}
