//! Every name this crate takes from `jwkstash`, in one place: when the facade moves a name into
//! a module, this file is the one to change.

pub(crate) use jwkstash::clock::{Clock, ManualClock};
pub(crate) use jwkstash::events::{KeyHealth, Stats};
pub(crate) use jwkstash::keys::{Algorithm, KeySet, VerifyingKey};
pub(crate) use jwkstash::limits::DEFAULT_ALGORITHMS;
pub(crate) use jwkstash::tier::RedisBuildError;
pub(crate) use jwkstash::{
    FreshnessPolicy, InvalidToken, KeysUnavailable, RedisCache, Verifier, VerifierBuildError,
    VerifierBuilder, VerifyError,
};
