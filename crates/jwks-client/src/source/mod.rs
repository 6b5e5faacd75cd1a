//! Where key sets come from: the HTTP fetcher and its source, OpenID Connect discovery, and the
//! static, pinned and failover sources.

pub(crate) mod discovery;
pub(crate) mod failover;
pub(crate) mod fetcher;
pub(crate) mod http;
pub(crate) mod pinned;
pub(crate) mod static_keys;
