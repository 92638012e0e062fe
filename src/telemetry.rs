//! Logging: one subscriber for the process, text or JSON lines, and a way to log an error
//! with its whole chain of sources. Built with the `otlp` feature, it also exports the spans
//! of requests to an OpenTelemetry collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

mod json_lines;

use std::{error::Error, fmt, io::IsTerminal};

use tracing_subscriber::{
    EnvFilter, Layer, fmt as log_fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What telemetry holds until the process ends. With OTLP export on, dropping it sends the
/// spans not yet exported.
#[must_use = "telemetry is flushed when this is dropped"]
#[derive(Debug)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    exporter: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

#[cfg(feature = "otlp")]
impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(exporter) = self.exporter.take()
            && let Err(err) = exporter.shutdown()
        {
            tracing::warn!(error = %err, "cannot send the last spans to the OTLP collector");
        }
    }
}

/// Installs the global subscriber, writing to stdout. `RUST_LOG` filters, `info` by default.
/// Text lines are coloured only on a terminal: in a file or a log collector the escape
/// codes would be noise.
pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = match format {
        LogFormat::Text => log_fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
        LogFormat::Json => json_lines::JsonLines::new(std::io::stdout).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otlp")]
    {
        let (exporter, failure) = match otlp::exporter() {
            Ok(exporter) => (exporter, None),
            Err(err) => (None, Some(err)),
        };
        let spans = exporter.as_ref().map(otlp::layer);
        // A second call (tests start many servers in one process) keeps the first subscriber.
        let _ = subscriber.with(spans).try_init();
        if let Some(err) = failure {
            tracing::warn!(error = %ErrorChain(&err), "OTLP export is off");
        }
        Telemetry { exporter }
    }
    #[cfg(not(feature = "otlp"))]
    {
        // A second call (tests start many servers in one process) keeps the first subscriber.
        let _ = subscriber.try_init();
        Telemetry {}
    }
}

/// The export of spans over OTLP (HTTP and protobuf), configured by the standard
/// `OTEL_EXPORTER_OTLP_*` and `OTEL_SERVICE_NAME` variables.
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::{ExporterBuildError, SpanExporter};
    use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
    use tracing_subscriber::{Layer, registry::LookupSpan};

    /// A provider exporting to `OTEL_EXPORTER_OTLP_ENDPOINT`; none when it is not set.
    pub(super) fn exporter() -> Result<Option<SdkTracerProvider>, ExporterBuildError> {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return Ok(None);
        }
        let spans = SpanExporter::builder().with_http().build()?;
        let mut resource = Resource::builder();
        // Without `OTEL_SERVICE_NAME`, the binary's name tells the two services apart.
        if std::env::var_os("OTEL_SERVICE_NAME").is_none()
            && let Some(name) = std::env::current_exe()
                .ok()
                .and_then(|path| path.file_stem()?.to_str().map(str::to_owned))
        {
            resource = resource.with_service_name(name);
        }
        Ok(Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_resource(resource.build())
                .build(),
        ))
    }

    pub(super) fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("order-processor"))
    }
}

/// Displays an error followed by each of its sources: `a: b: c`.
pub struct ErrorChain<'a>(pub &'a dyn Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
