use std::sync::Arc;
use std::time::SystemTime;

/// A cached value with the times that govern it.
///
/// * `fetched_at`: when the upstream produced the value (used to order writes: a cache never
///   replaces an entry with one fetched earlier).
/// * `fresh_until`: until when the value may be used without asking upstream again.
/// * `usable_until`: the hard end of its life. A backend must never return an entry past it;
///   between `fresh_until` and `usable_until` the value is stale, kept for provider outages.
/// * `etag`: the upstream's validator, sent back as `If-None-Match`.
///
/// Freshness is policy and lives above the cache; a backend only enforces `usable_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry<V> {
    /// The cached value.
    pub value: V,
    /// When the upstream produced the value.
    pub fetched_at: SystemTime,
    /// Until when the value is fresh.
    pub fresh_until: SystemTime,
    /// After this instant the entry must not be served at all.
    pub usable_until: SystemTime,
    /// The upstream's entity tag, if it sent one (shared, so cloning an entry never allocates).
    pub etag: Option<Arc<str>>,
}

impl<V> Entry<V> {
    /// An entry without an entity tag.
    ///
    /// The times are taken as given; callers keep `fetched_at <= fresh_until <= usable_until`.
    pub fn new(
        value: V,
        fetched_at: SystemTime,
        fresh_until: SystemTime,
        usable_until: SystemTime,
    ) -> Self {
        Self {
            value,
            fetched_at,
            fresh_until,
            usable_until,
            etag: None,
        }
    }

    /// The same entry with an entity tag.
    #[must_use]
    pub fn with_etag(mut self, etag: Option<impl Into<Arc<str>>>) -> Self {
        self.etag = etag.map(Into::into);
        self
    }

    /// Whether the entry is fresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.fresh_until
    }

    /// Whether the entry may still be served at `now` (fresh or stale).
    pub fn is_usable(&self, now: SystemTime) -> bool {
        now < self.usable_until
    }
}
