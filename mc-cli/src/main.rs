//! The `mc` command.
fn main() {
    println!("mc {}", env!("CARGO_PKG_VERSION"));
}
