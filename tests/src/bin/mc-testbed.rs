//! mc-testbed.
fn main() {}
