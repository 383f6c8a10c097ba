//! The one error type of `mc-core`.

/// Everything that can go wrong in `mc-core`. Each variant says what failed, why, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Placeholder until the first module lands; removed then.
    #[error("not yet implemented: {0}")]
    Unimplemented(&'static str),
}
