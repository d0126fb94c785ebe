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
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|err| crate::Error::Config(format!("Redis URL {url:?}: {err}")))?;
        // Requests are small and latency-bound: Nagle's algorithm would hold
        // a pipelined command back until the previous reply is acknowledged.
        let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        redis::Client::open(info)
            .map_err(|err| crate::Error::Config(format!("Redis URL {url:?}: {err}")))
    }
}

/// What a job gets when its submission does not say (the API's settings).
#[derive(Debug, Clone, clap::Args)]
pub struct JobDefaults {
    /// Attempts a job gets before it ends FINISHED -- ERROR, unless it asks
    /// for another number.
    #[arg(long, env = "JOBS_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::job::MAX_ATTEMPTS)))]
    pub max_attempts: u32,

    /// How long one attempt may run before it is stopped and counts as
    /// failed, in milliseconds, unless the job asks for another timeout.
    #[arg(long, env = "JOBS_RUN_TIMEOUT_MS", default_value_t = 2 * 3600 * 1000,
          value_parser = clap::value_parser!(u64).range(1..=24 * 3600 * 1000))]
    pub run_timeout_ms: u64,

    /// How long an idempotency key is remembered, in seconds: a repeat
    /// within this window returns the job first created.
    #[arg(long, env = "JOBS_IDEMPOTENCY_TTL_SECS", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_ttl_secs: u64,
}

impl Default for JobDefaults {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            run_timeout_ms: 2 * 3600 * 1000,
            idempotency_ttl_secs: 24 * 3600,
        }
    }
}

/// How long finished jobs and results are kept, so Redis memory stays
/// bounded. Both the API (cancelled jobs) and the workers apply it.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Retention {
    /// How long a finished job is kept, in seconds; then it is deleted and
    /// leaves the list.
    #[arg(long, env = "JOBS_RETENTION_SECS", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_secs: u64,

    /// How long a result is kept, in seconds.
    #[arg(long, env = "JOBS_RESULT_TTL_SECS", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub result_ttl_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 24 * 3600,
            result_ttl_secs: 7 * 24 * 3600,
        }
    }
}

impl Retention {
    pub(crate) fn job_ms(&self) -> u64 {
        self.retention_secs.saturating_mul(1000)
    }

    pub(crate) fn result_ms(&self) -> u64 {
        self.result_ttl_secs.saturating_mul(1000)
    }
}
