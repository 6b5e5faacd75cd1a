//! # Write your own backend
//!
//! A cache tier is one trait, [`Cache<V>`](crate::Cache): `get`, `put`, `remove` and a name.
//! Implement it over any store (a database row, an object store, etcd, a file), prove it with
//! the conformance suite, and give it to the verifier as its near, shared or snapshot tier
//! (`VerifierBuilder::near_tier`, `shared_tier` with a [`Lease`](crate::Lease) and
//! [`Invalidations`](crate::Invalidations), or `snapshot_tier`). `jwkstash-file` is the worked
//! example: about 300 lines with its builder and file I/O, of which the `Cache` impl is 50.
//!
//! ## 1. Store bytes in the envelope
//!
//! The verifier's values implement [`CacheValue`](crate::CacheValue) (a key set's bytes are its
//! raw JWKS). A store that keeps bytes wraps them with [`envelope::seal`](crate::envelope::seal)
//! and checks them with [`envelope::open`](crate::envelope::open): version, times, the key the
//! entry belongs to and, with a secret, an HMAC. Never trust what comes back without it.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use jwkstash_core::envelope::{self, Refusals, Refused};
//! use jwkstash_core::{async_trait, Cache, CacheError, CacheErrorKind, CacheValue, Entry, SharedClock};
//!
//! /// A tier over a key-value store of bytes (here a map; yours is a database or a bucket).
//! #[derive(Debug)]
//! pub struct BytesStore {
//!     rows: Mutex<HashMap<String, Vec<u8>>>,
//!     clock: SharedClock,
//!     refusals: Refusals,
//! }
//!
//! #[async_trait]
//! impl<V: CacheValue + Clone> Cache<V> for BytesStore {
//!     async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
//!         let Some(bytes) = self.rows.lock().unwrap().get(key).cloned() else {
//!             return Ok(None);
//!         };
//!         // No secret here (`&[]`); a store others can write needs one.
//!         let skew = Duration::from_secs(5);
//!         let opened = match envelope::open(key, &bytes, &[] as &[&[u8]], self.clock.now(), skew) {
//!             Ok(opened) => opened,
//!             // A bad value is a miss, counted and logged once per kind: never an error.
//!             Err(reason) => {
//!                 self.refusals.refuse("bytes", key, reason);
//!                 return Ok(None);
//!             }
//!         };
//!         match V::from_bytes(opened.value) {
//!             Ok(value) => Ok(Some(opened.into_entry(value))),
//!             Err(_) => {
//!                 self.refusals.refuse("bytes", key, Refused::BadValue);
//!                 Ok(None)
//!             }
//!         }
//!     }
//!
//!     async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
//!         let sealed = envelope::seal(key, &entry, &entry.value.to_bytes(), None)
//!             .ok_or_else(|| CacheError::new("bytes", CacheErrorKind::Other))?;
//!         let mut rows = self.rows.lock().unwrap();
//!         // Write-if-newer: a slow writer never rolls a newer entry back.
//!         let newer_held = rows.get(key).and_then(|held| {
//!             envelope::open(key, held, &[] as &[&[u8]], self.clock.now(), Duration::ZERO).ok()
//!         });
//!         if newer_held.is_none_or(|held| held.fetched_at <= entry.fetched_at) {
//!             rows.insert(key.to_owned(), sealed);
//!         }
//!         Ok(())
//!     }
//!
//!     async fn remove(&self, key: &str) -> Result<(), CacheError> {
//!         self.rows.lock().unwrap().remove(key);
//!         Ok(())
//!     }
//!
//!     fn name(&self) -> &'static str {
//!         "bytes"
//!     }
//! }
//! # let _ = BytesStore { rows: Default::default(), clock: Arc::new(jwkstash_core::SystemClock), refusals: Default::default() };
//! ```
//!
//! A real store's I/O is async (or runs on `tokio::task::spawn_blocking`, as `jwkstash-file`
//! does), returns its own failures as [`CacheError`](crate::CacheError) (the verifier counts
//! them and reads a miss), and bounds what it reads.
//!
//! ## 2. Run the conformance suite in your tests
//!
//! Feature `testkit` of jwkstash-core: [`testkit::run_all`](crate::testkit) takes two handles
//! on your backend that must not see each other's entries (two prefixes, two directories) and
//! a [`ManualClock`](crate::ManualClock) that your backend reads. It checks misses, round trips
//! of values and times, write-if-newer, removal, expiry at `usable_until`, stale entries still
//! served, isolation, a 256 KiB value and 64 concurrent cold reads.
//!
//! ```ignore
//! #[tokio::test]
//! async fn passes_the_conformance_suite() {
//!     let clock = jwkstash_core::ManualClock::default();
//!     let a = Arc::new(BytesStore::new(Arc::new(clock.clone()), "prefix-a"));
//!     let b = Arc::new(BytesStore::new(Arc::new(clock.clone()), "prefix-b"));
//!     jwkstash_core::testkit::run_all(a, b, &clock).await;
//! }
//! ```
//!
//! A shared tier also runs `testkit::run_lease_suite` and `testkit::run_invalidations_suite`.
//! Then test what only your backend can get wrong: `jwkstash-file`'s tests plant corrupt,
//! truncated, foreign, tampered, future and expired files, make the directory read-only or
//! remove it, and run two writer processes at once.
