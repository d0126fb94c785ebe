//! The worker's metrics, and the small HTTP endpoint that serves them.
//!
//! Recording costs a job one map lookup when its attempt starts (the kind's
//! handles, created on first use and kept) and then only atomic additions:
//! no lock is held across a job and nothing here talks to Redis.
//!
//! The text served is the OpenMetrics form of the Prometheus exposition
//! format, which Prometheus scrapes natively.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    str::FromStr,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use jobs_core::JobStatus;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders every metric of `registry` as text, for a scrape.
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// Buckets of job run times, in seconds: 0.5 ms to about 35 minutes, each
/// four times the last, since kinds range from microseconds to hours.
fn run_time_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 4.0, 12)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FinishedLabels {
    kind: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReclaimLabels {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What a worker counts. Cheap to clone: clones share every series. Record
/// into one, and [`register`](Self::register) it with the registry a
/// metrics endpoint renders; unregistered, it records into nothing anyone
/// reads.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    attempts: Family<KindLabel, Counter>,
    retries: Family<KindLabel, Counter>,
    finished: Family<FinishedLabels, Counter>,
    run_time: HistogramFamily<KindLabel>,
    leases_lost: Family<KindLabel, Counter>,
    reclaims: Family<ReclaimLabels, Counter>,
    refused: Counter,
    kinds: Arc<RwLock<HashMap<String, Arc<KindMetrics>>>>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let reclaims = Family::default();
        // Shown at zero from the start, so a rate over them is defined.
        for outcome in ["requeued", "failed", "cancelled"] {
            let _ = reclaims.get_or_create(&ReclaimLabels { outcome });
        }
        Self {
            attempts: Family::default(),
            retries: Family::default(),
            finished: Family::default(),
            run_time: Family::new_with_constructor(|| Histogram::new(run_time_buckets())),
            leases_lost: Family::default(),
            reclaims,
            refused: Counter::default(),
            kinds: Arc::default(),
        }
    }
}

impl WorkerMetrics {
    /// Metrics that record into nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every series to `registry`, under the names the README lists.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "jobs_attempts_started",
            "Attempts a worker started, by kind",
            self.attempts.clone(),
        );
        registry.register(
            "jobs_retries_scheduled",
            "Failed attempts that will be retried after a backoff, by kind",
            self.retries.clone(),
        );
        self.register_finished(registry);
        registry.register(
            "jobs_run_duration_seconds",
            "How long attempts ran on a worker, from handler start to its outcome, by kind",
            self.run_time.clone(),
        );
        registry.register(
            "jobs_lease_expiries",
            "Attempts a worker stopped because its lease lapsed or the job was taken from it, by kind",
            self.leases_lost.clone(),
        );
        registry.register(
            "jobs_lease_reclaims",
            "Jobs whose worker stopped renewing its lease, taken back by recovery: requeued, or failed when no attempts remained",
            self.reclaims.clone(),
        );
        registry.register(
            "jobs_outcomes_refused",
            "Outcomes Redis refused because the worker no longer held the job's lease",
            self.refused.clone(),
        );
    }

    /// Adds `jobs_finished` alone: the one series a process that runs no
    /// jobs (the API, counting jobs cancelled while still queued) moves.
    pub fn register_finished(&self, registry: &mut Registry) {
        registry.register(
            "jobs_finished",
            "Jobs that reached a terminal status (SUCCESS, ERROR, CANCELLED), by kind and status",
            self.finished.clone(),
        );
    }

    /// The handles of one kind, created on its first job and kept.
    pub(crate) fn kind(&self, kind: &str) -> Arc<KindMetrics> {
        let known = self
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
            .cloned();
        if let Some(known) = known {
            return known;
        }
        let label = KindLabel {
            kind: kind.to_owned(),
        };
        let finished = |status| {
            self.finished
                .get_or_create(&FinishedLabels {
                    kind: kind.to_owned(),
                    status,
                })
                .clone()
        };
        let handles = Arc::new(KindMetrics {
            attempts: self.attempts.get_or_create(&label).clone(),
            retries: self.retries.get_or_create(&label).clone(),
            success: finished("SUCCESS"),
            error: finished("ERROR"),
            cancelled: finished("CANCELLED"),
            run_time: self.run_time.get_or_create(&label).clone(),
            leases_lost: self.leases_lost.get_or_create(&label).clone(),
        });
        self.kinds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind.to_owned())
            .or_insert(handles)
            .clone()
    }

    /// Counts what one recovery pass took back, and the jobs it ended.
    pub(crate) fn reclaimed(&self, recovered: &jobs_core::Recovered) {
        for (kind, status) in &recovered.ended {
            self.kind(kind).ended(*status);
        }
        for (outcome, count) in [
            ("requeued", recovered.requeued),
            ("failed", recovered.failed),
            ("cancelled", recovered.cancelled),
        ] {
            if count > 0 {
                self.reclaims
                    .get_or_create(&ReclaimLabels { outcome })
                    .inc_by(count);
            }
        }
    }

    /// Counts a job that ended CANCELLED before any worker took it: the
    /// API counts those, since no worker sees them.
    pub fn cancelled_before_start(&self, kind: &str) {
        self.kind(kind).ended(JobStatus::Cancelled);
    }

    /// Counts outcomes Redis refused (the lease was no longer ours).
    pub(crate) fn refused(&self, count: u64) {
        self.refused.inc_by(count);
    }
}

/// One kind's handles: atomic counters and a histogram, shared with the
/// registered families.
#[derive(Debug)]
pub(crate) struct KindMetrics {
    pub(crate) attempts: Counter,
    pub(crate) retries: Counter,
    pub(crate) success: Counter,
    pub(crate) error: Counter,
    pub(crate) cancelled: Counter,
    pub(crate) run_time: Histogram,
    pub(crate) leases_lost: Counter,
}

impl KindMetrics {
    /// Counts a job of this kind that ended with `status`, a terminal one.
    pub(crate) fn ended(&self, status: JobStatus) {
        match status {
            JobStatus::Success => &self.success,
            JobStatus::Error => &self.error,
            JobStatus::Cancelled => &self.cancelled,
            JobStatus::Queued | JobStatus::Running => return,
        }
        .inc();
    }

    pub(crate) fn observe_run(&self, ran: Duration) {
        self.run_time.observe(ran.as_secs_f64());
    }
}

/// Where a worker serves its metrics: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddr {
    /// No metrics endpoint.
    Off,
    /// Serve `GET /metrics` here.
    At(SocketAddr),
}

impl FromStr for MetricsAddr {
    type Err = std::net::AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "" | "off" | "none" => Ok(MetricsAddr::Off),
            addr => addr.parse().map(MetricsAddr::At),
        }
    }
}

impl fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsAddr::Off => f.write_str("off"),
            MetricsAddr::At(addr) => addr.fmt(f),
        }
    }
}

/// Serves `GET /metrics` (the text of `registry`) on `listener` until
/// `shutdown` is cancelled. Any other path is 404.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::{http::header, routing::get};
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                match render(&registry) {
                    Ok(text) => Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text)),
                    Err(_) => Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_off_turns_the_endpoint_off() {
        assert_eq!("off".parse::<MetricsAddr>().unwrap(), MetricsAddr::Off);
        assert_eq!("".parse::<MetricsAddr>().unwrap(), MetricsAddr::Off);
        assert_eq!(
            "127.0.0.1:0".parse::<MetricsAddr>().unwrap(),
            MetricsAddr::At("127.0.0.1:0".parse().unwrap())
        );
        assert!("nowhere".parse::<MetricsAddr>().is_err());
    }

    #[test]
    fn recorded_values_are_rendered_under_their_names() {
        let metrics = WorkerMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let sum = metrics.kind("sum");
        sum.attempts.inc();
        sum.success.inc();
        sum.observe_run(Duration::from_millis(3));
        assert!(Arc::ptr_eq(&sum, &metrics.kind("sum")));
        metrics.reclaimed(&jobs_core::Recovered {
            requeued: 0,
            failed: 1,
            cancelled: 1,
            forgotten: 5,
            ended: vec![
                ("sleep".to_owned(), JobStatus::Error),
                ("sum".to_owned(), JobStatus::Cancelled),
            ],
        });
        let text = render(&registry).unwrap();
        for line in [
            "jobs_attempts_started_total{kind=\"sum\"} 1",
            "jobs_finished_total{kind=\"sum\",status=\"SUCCESS\"} 1",
            "jobs_finished_total{kind=\"sum\",status=\"ERROR\"} 0",
            "jobs_finished_total{kind=\"sum\",status=\"CANCELLED\"} 1",
            "jobs_finished_total{kind=\"sleep\",status=\"ERROR\"} 1",
            "jobs_run_duration_seconds_count{kind=\"sum\"} 1",
            "jobs_run_duration_seconds_bucket{le=\"0.008\",kind=\"sum\"} 1",
            // Shown at zero, not left out, so that a rate over it is defined.
            "jobs_lease_reclaims_total{outcome=\"requeued\"} 0",
            "jobs_lease_reclaims_total{outcome=\"cancelled\"} 1",
            "jobs_lease_reclaims_total{outcome=\"failed\"} 1",
            "jobs_outcomes_refused_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
