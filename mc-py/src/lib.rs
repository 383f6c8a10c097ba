//! `mc-py`: the Python module `mc`, a thin binding of `mc-core`.
//!
//! The native extension is `mc._mc`; the Python package `mc` (in `python/mc`) re-exports it and
//! adds the submodules `mc.pki` and `mc.render`. Every function wraps an `mc-core` function:
//! no model logic lives here. `mc_core::Error` becomes an `mc.Error` subclass carrying the Rust
//! message (see [`errors`]); heavy calls release the GIL.
// pyo3's #[pyclass], #[pymethods] and #[pymodule] macros expand to unsafe FFI glue (the CPython
// C API); this crate writes no unsafe code itself, but the lint cannot tell the two apart.
#![allow(unsafe_code)]

mod convert;
mod errors;
mod identity;
mod link;
mod mirror;
mod pki;
mod pytime;
mod render;
mod selector;
mod transport;
mod trust;

use pyo3::prelude::*;

/// The native module `mc._mc`. Import `mc` instead.
#[pymodule]
fn _mc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    trust::register(m)?;
    transport::register(m)?;
    identity::register(m)?;
    m.add_class::<selector::Selector>()?;
    m.add_class::<link::Link>()?;
    mirror::register(m)?;
    let pki_module = PyModule::new(m.py(), "pki")?;
    pki::register(&pki_module)?;
    m.add_submodule(&pki_module)?;
    let render_module = PyModule::new(m.py(), "render")?;
    render::register(&render_module)?;
    m.add_submodule(&render_module)?;
    Ok(())
}
