//! [`Invalidations`] in Redis: pub/sub on `PREFIX:invalidations` through a subscriber client
//! that re-subscribes after reconnects.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{EventInterface, PubsubInterface};
use jwkstash_core::{CacheError, Invalidation, Invalidations};
use tokio::sync::broadcast;

use crate::cache::RedisCache;

/// The longest invalidation message accepted from the channel.
const MAX_MESSAGE_BYTES: usize = 256;

#[async_trait]
impl Invalidations for RedisCache {
    async fn publish(&self, invalidation: Invalidation) -> Result<(), CacheError> {
        let client = &self.inner.client;
        let message = format!("{} {}", invalidation.key, invalidation.version);
        let _receivers: i64 = client
            .call(client.redis().publish(client.channel(), message))
            .await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.inner.invalidations.subscribe()
    }
}

/// Parses `"<key> <version>"`; anything else (from whoever can publish) is dropped.
fn parse_message(message: &str) -> Option<Invalidation> {
    if message.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let (key, version) = message.split_once(' ')?;
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    Some(Invalidation::new(
        key_ok.then(|| key.to_owned())?,
        version.parse().ok()?,
    ))
}

/// Subscribes to the channel (retrying until Redis is there) and forwards its messages.
pub(crate) fn start_subscriber(cache: &RedisCache) {
    let inner = &cache.inner;
    let subscriber = inner.subscriber.clone();
    let channel = inner.client.channel();
    inner.track(subscriber.manage_subscriptions());
    inner.track(tokio::spawn({
        let subscriber = subscriber.clone();
        async move {
            while let Err(error) = subscriber.subscribe(channel.clone()).await {
                tracing::debug!(%error, "redis subscribe failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }));
    let sender = inner.invalidations.clone();
    let mut messages = subscriber.message_rx();
    inner.track(tokio::spawn(async move {
        loop {
            match messages.recv().await {
                Ok(message) => {
                    let parsed = message.value.as_str().and_then(|text| parse_message(&text));
                    if let Some(invalidation) = parsed {
                        let _ = sender.send(invalidation);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_parsed_strictly() {
        assert_eq!(
            parse_message("jwks:abc 17"),
            Some(Invalidation::new("jwks:abc", 17))
        );
        for bad in [
            "",
            "jwks:abc",
            "jwks:abc x",
            "../etc 1",
            "a b c",
            " 1",
            "jwks:abc -1",
        ] {
            assert_eq!(parse_message(bad), None, "{bad:?}");
        }
        assert_eq!(parse_message(&format!("{} 1", "k".repeat(300))), None);
    }
}
