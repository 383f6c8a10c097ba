//! Log setup: plain or JSON lines on stderr, filtered by an env-filter expression.

use crate::config::LogFormat;

/// Installs the global subscriber. An invalid filter falls back to `info` (with a warning).
pub fn init(format: LogFormat, filter: &str) {
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new("info"),
            Some(e.to_string()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Some(e) = bad {
        tracing::warn!(error = %e, "--log-level is not a valid filter; using info");
    }
}
