//! Strict JSON object reading shared by the header and the claims: every member name is checked
//! for duplicates (RFC 7515 §4 and RFC 7519 §4 require refusing them), borrowing names from the
//! input when it can.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

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
