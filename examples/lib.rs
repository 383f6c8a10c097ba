//! Runnable examples of the mc crates; each lives in `examples/`.
