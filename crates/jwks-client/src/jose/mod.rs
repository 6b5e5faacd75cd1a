//! JOSE, pure and synchronous: algorithms, strict JSON, token parsing, claims, issuer
//! templates, and key sets with the JWK parser and certificates. The security core: it decides
//! whether a token is acceptable, and does no I/O.

pub(crate) mod alg;
pub(crate) mod certificate;
pub(crate) mod claims;
pub(crate) mod error;
pub(crate) mod json;
pub(crate) mod keyset;
pub(crate) mod template;
pub(crate) mod token;
