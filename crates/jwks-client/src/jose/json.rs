//! Strict JSON object reading shared by the header and the claims: every member name is checked
//! for duplicates (RFC 7515 §4 and RFC 7519 §4 require refusing them), borrowing names from the
//! input when it can, and every value jwkstash does not read is still read in full
//! ([`Checked`]), so that the header and the payload are valid JSON (RFC 8259) to the last byte.
//!
//! Limits of what is accepted anywhere in a header or payload: strings valid UTF-8 (lone
//! surrogate escapes refused), numbers that fit an IEEE 754 double (a 5,000-digit number is
//! refused), nesting at most 128 levels deep (serde_json's recursion limit), member names unique
//! within each object.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// A member name, borrowed when it has no escapes.
pub(crate) struct Name<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// Any JSON value, read in full and dropped. `IgnoredAny` would skip strings without checking
/// their UTF-8 and numbers without checking their range; this reads every string and number as
/// serde_json reads those it returns, and refuses duplicate names in every object.
pub(crate) struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Checked, E> {
        if value.is_finite() {
            Ok(Checked)
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut seen = SeenNames::default();
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            seen.insert(name)?;
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// A member whose value should be a string: the string (borrowed unless it has escapes), or
/// `Other` for any other JSON value, which is still read in full.
pub(crate) enum StrMember<'de> {
    Str(Cow<'de, str>),
    Other,
}

impl<'de> Deserialize<'de> for StrMember<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = StrMember<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrMember::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrMember::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                CheckedVisitor.visit_bool(v).map(|_| StrMember::Other)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                CheckedVisitor.visit_i64(v).map(|_| StrMember::Other)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                CheckedVisitor.visit_u64(v).map(|_| StrMember::Other)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                CheckedVisitor.visit_f64(v).map(|_| StrMember::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrMember::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                CheckedVisitor.visit_seq(seq).map(|_| StrMember::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                CheckedVisitor.visit_map(map).map(|_| StrMember::Other)
            }
        }
        deserializer.deserialize_any(StrVisitor)
    }
}

/// The member names seen so far in one object: on the stack while few (objects here are
/// small), in a hash set once they are many, so a hostile object stays linear.
pub(crate) struct SeenNames<'de> {
    few: [Cow<'de, str>; FEW],
    len: usize,
    many: Option<HashSet<Cow<'de, str>>>,
}

const FEW: usize = 16;

impl Default for SeenNames<'_> {
    fn default() -> Self {
        Self {
            few: std::array::from_fn(|_| Cow::Borrowed("")),
            len: 0,
            many: None,
        }
    }
}

impl<'de> SeenNames<'de> {
    /// Records `name`; fails on a duplicate.
    pub(crate) fn insert<E: de::Error>(&mut self, name: Cow<'de, str>) -> Result<(), E> {
        let fresh = match &mut self.many {
            Some(set) => set.insert(name),
            None if self.len < FEW => {
                let fresh = !self.few[..self.len].contains(&name);
                self.few[self.len] = name;
                self.len += 1;
                fresh
            }
            None => {
                let mut set: HashSet<_> = self.few.iter().cloned().collect();
                let fresh = set.insert(name);
                self.many = Some(set);
                fresh
            }
        };
        if fresh {
            Ok(())
        } else {
            Err(E::custom("duplicate member"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(json: &[u8]) -> bool {
        serde_json::from_slice::<Checked>(json).is_ok()
    }

    #[test]
    fn every_value_is_read_in_full() {
        assert!(checked(
            br#"{"a":[1,2.5,-3,"x",null,true,{"b":{}}],"c":"\u00e9"}"#
        ));
        // Invalid UTF-8 inside a string nobody reads.
        assert!(!checked(b"{\"x\":\"\xff\xfe\"}"));
        assert!(!checked(br#"{"x":"\ud800"}"#), "a lone surrogate escape");
        assert!(!checked(
            format!("{{\"n\":{}}}", "9".repeat(5000)).as_bytes()
        ));
        assert!(!checked(br#"{"n":1e999}"#));
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(!checked(deep.as_bytes()), "1,000 levels deep");
        let allowed = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(checked(allowed.as_bytes()), "100 levels deep");
        assert!(!checked(br#"{"a":{"b":1,"b":2}}"#), "a nested duplicate");
        assert!(!checked(br#"{"a":1"#));
    }

    #[test]
    fn duplicates_are_found_before_and_after_the_switch_to_a_set() {
        let mut seen = SeenNames::default();
        for i in 0..40 {
            seen.insert::<serde_json::Error>(Cow::Owned(format!("m{i}")))
                .unwrap_or_default();
        }
        assert!(
            seen.insert::<serde_json::Error>(Cow::Borrowed("m3"))
                .is_err()
        );
        assert!(
            seen.insert::<serde_json::Error>(Cow::Borrowed("m39"))
                .is_err()
        );
        assert!(
            seen.insert::<serde_json::Error>(Cow::Borrowed("m40"))
                .is_ok()
        );
        let mut few = SeenNames::default();
        assert!(few.insert::<serde_json::Error>(Cow::Borrowed("a")).is_ok());
        assert!(few.insert::<serde_json::Error>(Cow::Borrowed("a")).is_err());
    }
}
