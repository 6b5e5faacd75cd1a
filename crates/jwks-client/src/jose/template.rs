//! [`IssuerTemplate`]: one verifier for many issuers that share a key set, such as the tenants
//! of a multi-tenant Entra ID (Azure AD) application: `https://login.microsoftonline.com/
//! {tenantid}/v2.0` for every tenant, all signed with the keys of one `common` JWKS.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::error::BuildError;

/// The longest placeholder value accepted (an Entra tenant id is 36 bytes).
pub const MAX_TEMPLATE_VALUE_BYTES: usize = 128;

/// An issuer pattern with one placeholder, bound to a claim of the token.
///
/// A token's `iss` matches when it is the pattern with the placeholder replaced by a value
/// that is not empty, has no `/`, `?` or `#`, is at most [`MAX_TEMPLATE_VALUE_BYTES`] long, is
/// allowed (see [`allow`](Self::allow) and [`allow_if`](Self::allow_if)), and equals the
/// token's `claim` (Entra: `tid`) byte for byte. A key whose JWK carries an `issuer` member is
/// used only for tokens whose `iss` is that member with `{tenantid}` replaced by the value.
#[derive(Clone)]
pub struct IssuerTemplate {
    template: String,
    prefix: String,
    suffix: String,
    claim: String,
    allowed: Allowed,
}

#[derive(Clone)]
enum Allowed {
    Any,
    List(Arc<HashSet<String>>),
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl fmt::Debug for IssuerTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allowed = match &self.allowed {
            Allowed::Any => "any".to_owned(),
            Allowed::List(list) => format!("{} values", list.len()),
            Allowed::Predicate(_) => "a predicate".to_owned(),
        };
        f.debug_struct("IssuerTemplate")
            .field("template", &self.template)
            .field("claim", &self.claim)
            .field("allowed", &allowed)
            .finish()
    }
}

impl IssuerTemplate {
    /// `template` with exactly one `{name}` placeholder, whose value must equal the token's
    /// `claim`. Every value is allowed until [`allow`](Self::allow) or
    /// [`allow_if`](Self::allow_if) restricts them.
    pub fn new(template: impl Into<String>, claim: impl Into<String>) -> Result<Self, BuildError> {
        let template = template.into();
        let claim = claim.into();
        let invalid = || {
            Err(BuildError::invalid_setting(
                "an issuer template needs exactly one {placeholder} after the scheme and host",
            ))
        };
        let (Some(open), Some(close)) = (template.find('{'), template.find('}')) else {
            return invalid();
        };
        if close <= open + 1 {
            return invalid();
        }
        let (prefix, suffix) = (&template[..open], &template[close + 1..]);
        // The value lies in the path: it can never change the scheme or the host.
        let host_end = prefix.find("://").map(|scheme| scheme + 3);
        if suffix.contains(['{', '}']) || host_end.is_none_or(|host| !prefix[host..].contains('/'))
        {
            return invalid();
        }
        if claim.is_empty() {
            return Err(BuildError::invalid_setting(
                "an issuer template needs the claim that carries its value",
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            template,
            claim,
            allowed: Allowed::Any,
        })
    }

    /// Allows only these values (tenant ids).
    #[must_use]
    pub fn allow<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed = Allowed::List(Arc::new(values.into_iter().map(Into::into).collect()));
        self
    }

    /// Allows the values for which `allowed` is true (a lookup in the application's tenant
    /// table). Called on every verification of a matching token: keep it fast, and never let
    /// it do I/O.
    #[must_use]
    pub fn allow_if(mut self, allowed: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.allowed = Allowed::Predicate(Arc::new(allowed));
        self
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The claim the placeholder's value must equal.
    pub fn claim(&self) -> &str {
        &self.claim
    }

    /// The placeholder's value in `issuer`, if `issuer` matches and the value is allowed.
    pub fn value_of<'i>(&self, issuer: &'i str) -> Option<&'i str> {
        let value = self.value_in_shape(issuer)?;
        let allowed = match &self.allowed {
            Allowed::Any => true,
            Allowed::List(list) => list.contains(value),
            Allowed::Predicate(allowed) => allowed(value),
        };
        allowed.then_some(value)
    }

    /// The placeholder's value in `issuer` if `issuer` has the template's shape, allowed or not
    /// (the allow-list is not asked).
    pub(crate) fn value_in_shape<'i>(&self, issuer: &'i str) -> Option<&'i str> {
        let value = issuer
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        is_plain_value(value).then_some(value)
    }

    /// Whether `issuer` matches with an allowed value.
    pub fn matches(&self, issuer: &str) -> bool {
        self.value_of(issuer).is_some()
    }
}

/// A placeholder value that cannot change the shape of the issuer around it.
fn is_plain_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_TEMPLATE_VALUE_BYTES
        && !value.contains(['/', '?', '#', '{', '}'])
}

/// Whether a key bound to `key_issuer` (a JWK's `issuer` member) may verify a token of
/// `issuer`: equal, or equal once `{tenantid}` is replaced by `tenant` (the template's value;
/// without one, by the value the shape of `issuer` gives).
pub(crate) fn key_admits(key_issuer: &str, issuer: &str, tenant: Option<&str>) -> bool {
    const PLACEHOLDER: &str = "{tenantid}";
    let Some(at) = key_issuer.find(PLACEHOLDER) else {
        return key_issuer == issuer;
    };
    let (prefix, suffix) = (&key_issuer[..at], &key_issuer[at + PLACEHOLDER.len()..]);
    let value = issuer
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix));
    match (value, tenant) {
        (Some(value), Some(tenant)) => value == tenant,
        (Some(value), None) => is_plain_value(value),
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRA: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

    #[test]
    fn a_template_needs_one_placeholder_in_the_path() {
        for bad in [
            "https://login.microsoftonline.com/v2.0",
            "https://login.microsoftonline.com/{}/v2.0",
            "https://{tenant}.example.com/",
            "https://login.example.com/{a}/{b}",
            "https://login.example.com/}{",
        ] {
            assert!(IssuerTemplate::new(bad, "tid").is_err(), "{bad}");
        }
        assert!(IssuerTemplate::new(ENTRA, "").is_err());
        assert!(IssuerTemplate::new(ENTRA, "tid").is_ok());
    }

    #[test]
    fn values_are_plain_and_allowed() {
        let template = IssuerTemplate::new(ENTRA, "tid").unwrap_or_else(|e| panic!("{e}"));
        let iss = |tid: &str| format!("https://login.microsoftonline.com/{tid}/v2.0");
        assert_eq!(template.value_of(&iss("abc")), Some("abc"));
        for bad in [
            "",
            "a/b",
            "a?b",
            "a#b",
            &"x".repeat(MAX_TEMPLATE_VALUE_BYTES + 1),
        ] {
            assert_eq!(template.value_of(&iss(bad)), None, "{bad}");
        }
        assert_eq!(
            template.value_of("https://login.microsoftonline.com/abc/v1.0"),
            None
        );
        let listed = template.clone().allow(["abc"]);
        assert!(listed.matches(&iss("abc")) && !listed.matches(&iss("abd")));
        let predicate = template.allow_if(|tid| tid.starts_with('a'));
        assert!(predicate.matches(&iss("abd")) && !predicate.matches(&iss("bcd")));
    }

    #[test]
    fn key_issuers_bind_keys_to_issuers() {
        let iss = "https://login.microsoftonline.com/t1/v2.0";
        assert!(key_admits(ENTRA, iss, Some("t1")));
        assert!(!key_admits(ENTRA, iss, Some("t2")));
        assert!(key_admits(ENTRA, iss, None));
        assert!(!key_admits(ENTRA, "https://evil.example.com/t1/v2.0", None));
        assert!(key_admits(iss, iss, Some("t1")));
        assert!(!key_admits(
            "https://login.microsoftonline.com/t2/v2.0",
            iss,
            None
        ));
    }
}
