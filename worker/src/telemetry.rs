//! Tracing for every binary: the log subscriber, the optional OTLP export of
//! spans, and the W3C trace context that links a job's spans to the call
//! that submitted it.
//!
//! Without `--otlp-endpoint` only the log subscriber runs: no OpenTelemetry
//! layer, no exporter, and the helpers below cost a failed downcast. The
//! trace context still travels then (the API stores the caller's
//! `traceparent` as it came), and the worker logs its trace id.

use jobs_core::TraceParent;
use opentelemetry::{
    Context,
    trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    },
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Where spans go besides the log.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TracingConfig {
    /// Export spans over OTLP/gRPC to this collector (for example
    /// `http://localhost:4317`). Unset: spans only shape the log, and no
    /// OpenTelemetry code runs.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("cannot export spans to {endpoint}: {source}")]
    Exporter {
        /// The endpoint given.
        endpoint: String,
        /// What the exporter said.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// Another global subscriber was installed first.
    #[error("cannot install the tracing subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps span export running. Call [`shutdown`](Self::shutdown) before the
/// process exits so the last spans are sent.
#[derive(Debug)]
#[must_use = "dropping the guard without shutdown loses the spans not yet sent"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Sends the spans not yet exported and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Shutting down waits for the export task on the runtime: do it
            // off the runtime's own threads.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(err)) = done {
                tracing::warn!(%err, "could not flush spans to the OTLP collector");
            }
        }
    }
}

/// Installs the global subscriber: logs to stderr filtered by `RUST_LOG`
/// (default `info`), and with an OTLP endpoint, spans exported there as
/// service `service`. Call it inside the Tokio runtime.
pub fn init(config: &TracingConfig, service: &'static str) -> Result<TracingGuard, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = log_layer(
        std::io::stderr,
        std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none(),
    );
    let Some(endpoint) = config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else {
        tracing_subscriber::registry()
            .with(filter)
            .with(log)
            .try_init()?;
        return Ok(TracingGuard { provider: None });
    };
    let provider = otlp_provider(endpoint, service)?;
    let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    tracing_subscriber::registry()
        .with(filter)
        .with(spans.and_then(log))
        .try_init()?;
    tracing::info!(endpoint, "exporting spans over OTLP");
    Ok(TracingGuard {
        provider: Some(provider),
    })
}

/// The log: one line per event to `writer`, with the fields of the spans
/// it happened in (see [`LogFields`]), in colour when `ansi`.
fn log_layer<S, W>(
    writer: W,
    ansi: bool,
) -> tracing_subscriber::fmt::Layer<S, LogFields, tracing_subscriber::fmt::format::Format, W>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + 'static,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(LogFields)
        .with_writer(writer)
        .with_ansi(ansi)
}

/// The log's own fields: every field but the OpenTelemetry attributes that
/// request spans carry for traces (`otel.*`, `http.*`, `rpc.*`). The log
/// keeps a request's jid; the route, method and status are in the traces
/// and the metrics. The fmt layer formats a span's fields when the span
/// opens and again at each `record`, whether or not anything is ever logged
/// inside it. Leaving them out, with one filter for the whole subscriber,
/// halved what a request span costs the API (BENCHMARKS.md).
struct LogFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for LogFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = LogVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'writer mut tracing_subscriber::fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        // Recording only attributes for traces (a response's status) must
        // not leave a separator behind.
        let mut logged = AnyLogged(false);
        fields.record(&mut logged);
        if !logged.0 {
            return Ok(());
        }
        if !current.fields.is_empty() {
            current.fields.push(' ');
        }
        self.format_fields(current.as_writer(), fields)
    }
}

/// Writes the fields the log keeps as `name=value`, as tracing-subscriber's
/// default visitor does. Without colours it writes them itself: the default
/// visitor styles every name and `=` even then, which was a third of what a
/// job's span cost the worker (BENCHMARKS.md). Messages, errors and
/// coloured logs still go to the default visitor.
struct LogVisitor<'writer> {
    writer: tracing_subscriber::fmt::format::Writer<'writer>,
    /// No field written yet: no separator before the next.
    is_empty: bool,
    result: std::fmt::Result,
}

impl LogVisitor<'_> {
    /// Whether `field` is written here rather than by the default visitor.
    fn plain(&self, field: &tracing::field::Field) -> bool {
        field.name() != "message" && !self.writer.has_ansi_escapes()
    }

    fn with_default(
        &mut self,
        record: impl FnOnce(&mut tracing_subscriber::fmt::format::DefaultVisitor<'_>),
    ) {
        use tracing_subscriber::field::VisitOutput;
        let mut visitor = tracing_subscriber::fmt::format::DefaultVisitor::new(
            self.writer.by_ref(),
            self.is_empty,
        );
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }
}

impl tracing::field::Visit for LogVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if left_out(field) || self.result.is_err() {
            return;
        }
        if !self.plain(field) {
            return self.with_default(|visitor| visitor.record_debug(field, value));
        }
        let name = field.name();
        let separator = if self.is_empty { "" } else { " " };
        self.is_empty = false;
        self.result = write!(
            self.writer,
            "{separator}{}={value:?}",
            name.strip_prefix("r#").unwrap_or(name)
        );
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if left_out(field) || self.result.is_err() {
            return;
        }
        if self.plain(field) {
            self.record_debug(field, &value);
        } else {
            self.with_default(|visitor| visitor.record_str(field, value));
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        if !left_out(field) && self.result.is_ok() {
            self.with_default(|visitor| visitor.record_error(field, value));
        }
    }
}

/// Fields the log never shows: OpenTelemetry attributes, which are for
/// traces, and the `log.*` metadata of records from the `log` crate (already
/// in the line's prefix).
fn left_out(field: &tracing::field::Field) -> bool {
    let name = field.name();
    ["otel.", "http.", "rpc.", "log."]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Whether a record holds any field the log keeps.
struct AnyLogged(bool);

impl tracing::field::Visit for AnyLogged {
    fn record_debug(&mut self, field: &tracing::field::Field, _: &dyn std::fmt::Debug) {
        self.0 |= !left_out(field);
    }
}

fn otlp_provider(
    endpoint: &str,
    service: &'static str,
) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    // The batch processor's default thread cannot drive tonic (it needs the
    // Tokio reactor): export from a task on the runtime instead.
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// Makes `span` a child of the remote span `parent` names, so it joins that
/// trace when spans are exported. Call it before the span is first entered.
/// Without the OpenTelemetry layer it does nothing.
pub fn set_parent(span: &tracing::Span, parent: &TraceParent) {
    // Both ids were checked when the TraceParent was parsed.
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(parent.trace_id()),
        SpanId::from_hex(parent.parent_id()),
    ) else {
        return;
    };
    let flags = if parent.sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
}

/// The trace context to hand on from inside `span`: its own, when spans are
/// exported (so what follows is its child); `None` without the
/// OpenTelemetry layer.
pub fn trace_parent_of(span: &tracing::Span) -> Option<TraceParent> {
    let context = span.context();
    let span = context.span();
    let ids = span.span_context();
    if !ids.is_valid() {
        return None;
    }
    TraceParent::parse(&format!(
        "00-{}-{}-{:02x}",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    ))
    .ok()
}

/// What a server stores with a job created in the current request: the
/// request span's own context when spans are exported, else the caller's
/// `traceparent` header as it came (if it is one).
pub fn trace_parent_to_store(header: Option<&[u8]>) -> Option<TraceParent> {
    trace_parent_of(&tracing::Span::current()).or_else(|| {
        header
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|text| TraceParent::parse(text).ok())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    /// A log that keeps what is written to it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the log layer writes, in colour when `ansi`, while `emit` runs.
    fn logged(ansi: bool, emit: impl FnOnce()) -> String {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(move || writer.clone(), ansi));
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(log.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_log_keeps_a_requests_jid_and_leaves_its_trace_attributes_to_traces() {
        let text = logged(false, || {
            let span = tracing::info_span!(
                "http request",
                otel.name = "POST /jobs",
                http.route = "/jobs",
                http.response.status_code = tracing::field::Empty,
                jid = tracing::field::Empty,
            );
            span.record("jid", tracing::field::display("7c9e6679"));
            span.record("http.response.status_code", 503);
            let refused = std::io::Error::other("connection refused");
            span.in_scope(|| {
                tracing::warn!(
                    attempt = 2,
                    kind = "sum",
                    error = &refused as &dyn std::error::Error,
                    "cannot reach Redis"
                )
            });
        });
        assert!(
            text.contains("http request{jid=7c9e6679}: "),
            "the span's context in the log: {text}"
        );
        assert!(
            text.contains(r#"cannot reach Redis attempt=2 kind="sum" error=connection refused"#),
            "{text}"
        );
        for attribute in ["otel.name", "POST /jobs", "http.route", "503"] {
            assert!(!text.contains(attribute), "{attribute} logged: {text}");
        }
    }

    #[test]
    fn a_coloured_log_styles_its_field_names() {
        let text = logged(true, || {
            tracing::info_span!("job", jid = "7c9e6679", otel.name = "job")
                .in_scope(|| tracing::warn!(attempt = 2, "lease lost"));
        });
        // Italic names, as tracing-subscriber's default formatting writes them.
        for name in ["jid", "attempt"] {
            assert!(
                text.contains(&format!("\x1b[3m{name}\x1b[0m")),
                "{name}: {text:?}"
            );
        }
        assert!(!text.contains("otel.name"), "{text:?}");
    }
}
