//! The registered claims (`exp`, `nbf`, `iat`, `iss`, `aud`) and the rules they are checked
//! against, with the verifier's clock rather than the system's.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::jose::error::InvalidToken;
use crate::jose::json::{Checked, Name, SeenNames};
use crate::jose::template::{self, IssuerTemplate};

/// The registered claims of a payload, borrowed as raw JSON and typed only when checked, so
/// that a wrong JSON type is a clear refusal and a valid payload costs no allocation.
#[derive(Default)]
pub(crate) struct Registered<'a> {
    exp: Option<&'a RawValue>,
    nbf: Option<&'a RawValue>,
    iat: Option<&'a RawValue>,
    iss: Option<&'a RawValue>,
    aud: Option<&'a RawValue>,
    /// The claim an issuer template binds its value to (Entra: `tid`), when there is one.
    bound: Option<&'a RawValue>,
}

impl<'a> Registered<'a> {
    /// Reads the registered claims; refuses non-objects and duplicate members.
    #[cfg(test)]
    pub(crate) fn parse(payload: &'a [u8]) -> Result<Self, InvalidToken> {
        Self::parse_with(payload, None)
    }

    /// Reads the registered claims and the claim named `bound` (an issuer template's).
    pub(crate) fn parse_with(payload: &'a [u8], bound: Option<&str>) -> Result<Self, InvalidToken> {
        let mut deserializer = serde_json::Deserializer::from_slice(payload);
        let claims =
            serde::de::DeserializeSeed::deserialize(RegisteredVisitor { bound }, &mut deserializer)
                .and_then(|claims| deserializer.end().map(|()| claims))
                .map_err(|_| InvalidToken::Malformed("payload is not a valid JSON object"))?;
        Ok(claims)
    }

    /// The `iat` claim in whole seconds, if it is present and a valid date.
    pub(crate) fn issued_at(&self) -> Option<u64> {
        self.iat.and_then(|raw| numeric_date(raw, "iat").ok())
    }
}

struct RegisteredVisitor<'n> {
    bound: Option<&'n str>,
}

impl<'de> serde::de::DeserializeSeed<'de> for RegisteredVisitor<'_> {
    type Value = Registered<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RegisteredVisitor<'_> {
    type Value = Registered<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Registered<'de>, A::Error> {
        let mut seen = SeenNames::default();
        let mut claims = Registered::default();
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            seen.insert(name.clone())?;
            let bound = self.bound == Some(&*name);
            let slot = match &*name {
                "exp" => &mut claims.exp,
                "nbf" => &mut claims.nbf,
                "iat" => &mut claims.iat,
                "iss" => &mut claims.iss,
                "aud" => &mut claims.aud,
                _ if bound => &mut claims.bound,
                _ => {
                    map.next_value::<Checked>()?;
                    continue;
                }
            };
            let value: &'de RawValue = map.next_value()?;
            *slot = Some(value);
            if bound {
                // Read in full like every member nobody types (UTF-8, finite numbers, depth,
                // unique names), whichever issuer the token turns out to have.
                serde_json::from_str::<Checked>(value.get()).map_err(serde::de::Error::custom)?;
                claims.bound = Some(value);
            }
        }
        Ok(claims)
    }
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number of seconds; fractions are floored.
fn numeric_date(raw: &RawValue, claim: &'static str) -> Result<u64, InvalidToken> {
    let invalid = InvalidToken::InvalidClaim(claim);
    let number: serde_json::Number =
        serde_json::from_str(raw.get()).map_err(|_| invalid.clone())?;
    if let Some(seconds) = number.as_u64() {
        return Ok(seconds);
    }
    match number.as_f64() {
        // Integers above u64 and negatives land here; only finite non-negative fractions pass.
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 && seconds < u64::MAX as f64 => {
            Ok(seconds.floor() as u64)
        }
        _ => Err(invalid),
    }
}

/// A JSON string, borrowed unless it has escapes; `None` for any other JSON type.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

/// Seconds since the epoch (0 before it).
pub(crate) fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The time claims of a verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) exp: Option<u64>,
    pub(crate) nbf: Option<u64>,
}

/// What the claims must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) issuers: Vec<String>,
    /// Issuers by pattern, sharing this verifier's keys (multi-tenant applications).
    pub(crate) template: Option<IssuerTemplate>,
    /// `None` accepts any audience (an explicit opt-out).
    pub(crate) audiences: Option<Vec<String>>,
    pub(crate) leeway: Duration,
    pub(crate) require_exp: bool,
    pub(crate) max_lifetime: Option<Duration>,
    /// Refuse an `iat` later than now plus the leeway.
    pub(crate) reject_future_iat: bool,
}

impl ClaimRules {
    /// Checks the registered claims at `now`, and returns the times a later re-check needs.
    ///
    /// Time rules (RFC 7519 §4.1.4, §4.1.5), in whole seconds with the leeway `L`:
    /// valid while `now < exp + L` and from `now + L >= nbf`.
    ///
    /// `key_issuer` is the `issuer` member of the key that verified the signature, if it has
    /// one: the token's `iss` must be that issuer.
    pub(crate) fn check(
        &self,
        claims: &Registered<'_>,
        now: SystemTime,
        key_issuer: Option<&str>,
    ) -> Result<Times, InvalidToken> {
        let date =
            |raw: Option<&RawValue>, name| raw.map(|raw| numeric_date(raw, name)).transpose();
        let times = Times {
            exp: date(claims.exp, "exp")?,
            nbf: date(claims.nbf, "nbf")?,
        };
        let iat = date(claims.iat, "iat")?;
        self.check_times(times, now)?;
        // A token issued in the future (beyond the leeway) comes from a clock or an issuer
        // that is wrong; refused unless the caller allows it.
        if self.reject_future_iat
            && iat.is_some_and(|iat| iat > unix_seconds(now).saturating_add(self.leeway.as_secs()))
        {
            return Err(InvalidToken::IssuedInFuture);
        }
        if let Some(max) = self.max_lifetime {
            let lifetime = match (times.exp, iat) {
                (Some(exp), Some(iat)) => exp.saturating_sub(iat),
                (Some(exp), None) => exp.saturating_sub(unix_seconds(now)),
                (None, _) => u64::MAX,
            };
            if lifetime > max.as_secs() {
                return Err(InvalidToken::LifetimeTooLong);
            }
        }
        self.check_issuer(claims, key_issuer)?;
        self.check_audience(claims.aud)?;
        Ok(times)
    }

    /// Checks `exp` and `nbf` at `now` (also for tokens served from the verified-token cache).
    pub(crate) fn check_times(&self, times: Times, now: SystemTime) -> Result<(), InvalidToken> {
        let now = unix_seconds(now);
        let leeway = self.leeway.as_secs();
        match times.exp {
            Some(exp) if now >= exp.saturating_add(leeway) => return Err(InvalidToken::Expired),
            None if self.require_exp => return Err(InvalidToken::MissingClaim("exp")),
            _ => {}
        }
        if times
            .nbf
            .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
        {
            return Err(InvalidToken::NotYetValid);
        }
        Ok(())
    }

    /// `iss` is one of ours, byte for byte, or matches the template with a value equal to the
    /// template's claim; and the key that verified the token is bound to that issuer, if bound.
    ///
    /// With a template, its claim (Entra: `tid`) is held to it whichever way `iss` is accepted:
    /// an issuer of ours that has the template's shape is the tenant the value names, so a
    /// claim present there must equal the value too (absent, the issuer stands on its own). The
    /// claim is valid JSON in full whenever a template is configured (see `RegisteredVisitor`).
    fn check_issuer(
        &self,
        claims: &Registered<'_>,
        key_issuer: Option<&str>,
    ) -> Result<(), InvalidToken> {
        let iss = claims.iss.ok_or(InvalidToken::MissingClaim("iss"))?;
        let iss = json_str(iss).ok_or(InvalidToken::InvalidIssuer)?;
        let exact = self.issuers.iter().any(|ours| *ours == iss);
        let tenant = match &self.template {
            None if exact => None,
            None => return Err(InvalidToken::InvalidIssuer),
            Some(template) if exact => {
                let value = template.value_in_shape(&iss);
                if let (Some(value), Some(claimed)) = (value, claims.bound)
                    && json_str(claimed).as_deref() != Some(value)
                {
                    return Err(InvalidToken::TenantMismatch);
                }
                None
            }
            Some(template) => {
                let value = template.value_of(&iss).ok_or(InvalidToken::InvalidIssuer)?;
                let claimed = claims.bound.and_then(json_str);
                if claimed.as_deref() != Some(value) {
                    return Err(InvalidToken::TenantMismatch);
                }
                Some(value)
            }
        };
        match key_issuer {
            Some(bound) if !template::key_admits(bound, &iss, tenant) => {
                Err(InvalidToken::KeyNotForIssuer)
            }
            _ => Ok(()),
        }
    }

    fn check_audience(&self, aud: Option<&RawValue>) -> Result<(), InvalidToken> {
        let Some(ours) = &self.audiences else {
            // Unchecked, but still valid JSON in full.
            return match aud.map(|aud| serde_json::from_str::<Checked>(aud.get())) {
                Some(Err(_)) => Err(InvalidToken::InvalidClaim("aud")),
                _ => Ok(()),
            };
        };
        let aud = aud.ok_or(InvalidToken::MissingClaim("aud"))?;
        let accepted = |aud: &str| ours.iter().any(|ours| ours == aud);
        let ok = if aud.get().starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(aud.get()).unwrap_or_default();
            let names: Option<Vec<Cow<'_, str>>> =
                items.iter().map(|item| json_str(item)).collect();
            names.is_some_and(|names| names.iter().any(|name| accepted(name)))
        } else {
            json_str(aud).is_some_and(|name| accepted(&name))
        };
        if ok {
            Ok(())
        } else {
            Err(InvalidToken::InvalidAudience)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuers: vec!["https://iss.example.com".into()],
            template: None,
            audiences: Some(vec!["api".into()]),
            leeway: Duration::from_secs(60),
            require_exp: true,
            max_lifetime: None,
            reject_future_iat: true,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn check(payload: &str, now: u64) -> Result<(), InvalidToken> {
        rules()
            .check(&Registered::parse(payload.as_bytes())?, at(now), None)
            .map(drop)
    }

    const OK: &str = r#""iss":"https://iss.example.com","aud":"api""#;

    #[test]
    fn expiry_boundary_is_exact() {
        let payload = format!(r#"{{{OK},"exp":1000}}"#);
        assert_eq!(check(&payload, 1059), Ok(()));
        assert_eq!(check(&payload, 1060), Err(InvalidToken::Expired));
    }

    #[test]
    fn not_before_boundary_is_exact() {
        let payload = format!(r#"{{{OK},"exp":5000,"nbf":1000}}"#);
        assert_eq!(check(&payload, 940), Ok(()));
        assert_eq!(check(&payload, 939), Err(InvalidToken::NotYetValid));
    }

    #[test]
    fn numeric_dates_of_the_wrong_type_are_refused() {
        for exp in [r#""1000""#, "true", "null", "[1000]", "-1", "1e300"] {
            let payload = format!(r#"{{{OK},"exp":{exp}}}"#);
            assert!(check(&payload, 10).is_err(), "exp {exp} accepted");
        }
        let payload = format!(r#"{{{OK},"exp":1e309}}"#);
        assert!(check(&payload, 10).is_err());
    }

    #[test]
    fn duplicate_members_are_refused() {
        let payload = format!(r#"{{{OK},"exp":1000,"exp":99999}}"#);
        assert!(matches!(
            check(&payload, 10),
            Err(InvalidToken::Malformed(_))
        ));
        let payload = format!(r#"{{{OK},"exp":99999,"x":1,"x":2}}"#);
        assert!(matches!(
            check(&payload, 10),
            Err(InvalidToken::Malformed(_))
        ));
    }

    #[test]
    fn audience_forms() {
        let with =
            |aud: &str| format!(r#"{{"iss":"https://iss.example.com","exp":99999,"aud":{aud}}}"#);
        assert_eq!(check(&with(r#""api""#), 10), Ok(()));
        assert_eq!(check(&with(r#"["x","api"]"#), 10), Ok(()));
        for bad in ["[]", r#"[""]"#, r#"["other"]"#, "1", r#"["api",1]"#, "null"] {
            assert_eq!(
                check(&with(bad), 10),
                Err(InvalidToken::InvalidAudience),
                "{bad}"
            );
        }
    }

    #[test]
    fn issuer_is_byte_exact() {
        for iss in [
            r#""https://iss.example.com.evil""#,
            r#""https://iss.example.com/""#,
            r#""HTTPS://iss.example.com""#,
            "1",
        ] {
            let payload = format!(r#"{{"iss":{iss},"aud":"api","exp":99999}}"#);
            assert_eq!(
                check(&payload, 10),
                Err(InvalidToken::InvalidIssuer),
                "{iss}"
            );
        }
    }

    #[test]
    fn a_templates_claim_is_checked_whichever_way_iss_is_accepted() {
        const ENTRA: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let mut rules = rules();
        rules
            .issuers
            .push("https://login.microsoftonline.com/t1/v2.0".into());
        rules.template = IssuerTemplate::new(ENTRA, "tid").ok();
        let check = |iss: &str, tid: Option<&str>| {
            let tid = tid.map_or(String::new(), |tid| format!(r#","tid":{tid}"#));
            let payload = format!(r#"{{"iss":"{iss}","aud":"api","exp":99999{tid}}}"#);
            let bound = rules.template.as_ref().map(IssuerTemplate::claim);
            rules
                .check(
                    &Registered::parse_with(payload.as_bytes(), bound)?,
                    at(10),
                    None,
                )
                .map(drop)
        };
        let (exact, shaped) = (
            "https://iss.example.com",
            "https://login.microsoftonline.com/t1/v2.0",
        );
        let matched = "https://login.microsoftonline.com/t2/v2.0";
        // An issuer of ours in the template's shape: a tid present must be its tenant.
        assert_eq!(check(shaped, Some(r#""t1""#)), Ok(()));
        assert_eq!(check(shaped, None), Ok(()));
        for tid in [r#""t2""#, r#""T1""#, "1", "null"] {
            assert_eq!(
                check(shaped, Some(tid)),
                Err(InvalidToken::TenantMismatch),
                "{tid}"
            );
        }
        // An issuer of ours outside the shape: the claim means nothing to it, but is valid JSON.
        assert_eq!(check(exact, Some("5")), Ok(()));
        // Through the template: the claim must be the tenant, and present.
        assert_eq!(check(matched, Some(r#""t2""#)), Ok(()));
        assert_eq!(check(matched, None), Err(InvalidToken::TenantMismatch));
        // Malformed claims are malformed whichever way iss is accepted.
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        for iss in [exact, shaped, matched] {
            for tid in [r#""\ud800""#, "1e999", &deep, r#"{"a":1,"a":2}"#] {
                assert!(
                    matches!(check(iss, Some(tid)), Err(InvalidToken::Malformed(_))),
                    "{iss} {tid}"
                );
            }
        }
    }

    #[test]
    fn lifetime_limit() {
        let mut rules = rules();
        rules.max_lifetime = Some(Duration::from_secs(3600));
        let long = format!(r#"{{{OK},"iat":0,"exp":7200}}"#);
        let claims = Registered::parse(long.as_bytes()).unwrap_or_default();
        assert_eq!(
            rules.check(&claims, at(10), None),
            Err(InvalidToken::LifetimeTooLong)
        );
    }
}
