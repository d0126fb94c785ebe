//! How every binary finds Redis. Each field is a flag and an environment
//! variable, so `--help` is the reference.

use std::time::Duration;

/// Where Redis is and which key prefix this deployment owns.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis server URL. When unset, REDIS_IP and REDIS_PORT are honoured,
    /// and otherwise redis://127.0.0.1:6379 is used.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis host, used only when REDIS_URL is unset.
    #[arg(long, env = "REDIS_IP")]
    pub redis_ip: Option<String>,

    /// Redis port, used only when REDIS_URL is unset.
    #[arg(long, env = "REDIS_PORT")]
    pub redis_port: Option<u16>,

    /// Prefix of every Redis key Jobs uses, so deployments (and test runs)
    /// can share one Redis without touching each other's data.
    #[arg(long, env = "JOBS_KEY_PREFIX", default_value = "jobs")]
    pub key_prefix: String,

    /// How long to wait for Redis to answer a command before reporting it
    /// unavailable, in milliseconds.
    #[arg(long, env = "JOBS_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
}

impl RedisConfig {
    /// A configuration for `url` with keys under `key_prefix`.
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            redis_url: Some(url.into()),
            redis_ip: None,
            redis_port: None,
            key_prefix: key_prefix.into(),
            redis_timeout_ms: 2000,
        }
    }

    /// The Redis URL to connect to, after the REDIS_IP/REDIS_PORT fallback.
    pub fn url(&self) -> String {
        match &self.redis_url {
            Some(url) => url.clone(),
            None => format!(
                "redis://{}:{}",
                self.redis_ip.as_deref().unwrap_or("127.0.0.1"),
                self.redis_port.unwrap_or(6379)
            ),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }

    pub(crate) fn client(&self) -> crate::Result<redis::Client> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err(crate::Error::Config(format!(
                "key prefix {:?} must be non-empty and hold no whitespace",
                self.key_prefix
            )));
        }
        let url = self.url();
        redis::Client::open(url.as_str())
            .map_err(|err| crate::Error::Config(format!("Redis URL {url:?}: {err}")))
    }
}
