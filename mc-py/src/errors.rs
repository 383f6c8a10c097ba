//! The exception hierarchy of `mc`: every `mc_core::Error` becomes an `mc.Error` subclass whose
//! message is the Rust message, with the structured parts (field path, PEM block and line) as
//! attributes.

use mc_core::Error as CoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    mc,
    Error,
    PyException,
    "Base class of every error raised by mc; the message says what failed, why, and the fix."
);
create_exception!(
    mc,
    PemError,
    Error,
    "A PEM bundle cannot be used: no certificate, a block that is not a CERTIFICATE, bad base64 \
     or DER, a certificate that is not a CA, or an anchor outside its validity. `block` and \
     `line` say where (None when the error is about the whole input)."
);
create_exception!(
    mc,
    ConfigError,
    Error,
    "The `values` of a linkerd-config ConfigMap are unusable; `field` names the value."
);
create_exception!(
    mc,
    PkiError,
    Error,
    "Certificate generation failed: inconsistent options, or a signer whose certificate or key \
     cannot be used."
);
create_exception!(
    mc,
    IdentityError,
    Error,
    "A name is not a valid DNS name or Linkerd identity."
);
create_exception!(
    mc,
    LinkError,
    Error,
    "A Link (or another resource field) has a missing or invalid value; `field` is its path, \
     e.g. `spec.gatewayPort`."
);
create_exception!(
    mc,
    SelectorError,
    Error,
    "A label selector cannot be parsed or is invalid; `field` is its path when it came from a \
     LabelSelector object."
);
create_exception!(
    mc,
    MirrorError,
    Error,
    "A mirror cannot be computed: the object is not the expected kind, does not match its \
     schema, or the remote Service cannot be mirrored under this Link."
);
create_exception!(
    mc,
    TransportError,
    Error,
    "A transport.l5d.io/v1 header is malformed, too long or incomplete (`needed` then says how \
     many more bytes are required)."
);
create_exception!(
    mc,
    RenderError,
    Error,
    "Manifests cannot be rendered from the given values."
);

/// Docstring of `mc.KindError`.
const KIND_ERROR_DOC: &str = "An object is not the expected kind (apiVersion/kind), or does not \
    match its schema (e.g. a port that is not a number). Both an mc.Error and a TypeError.";

/// `mc.KindError(mc.Error, TypeError)`. `create_exception!` takes a single base, so the class is
/// made once by calling `type(name, bases, dict)`.
fn kind_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static KIND_ERROR: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    KIND_ERROR
        .get_or_try_init(py, || {
            let bases = PyTuple::new(py, [py.get_type::<Error>(), py.get_type::<PyTypeError>()])?;
            let dict = PyDict::new(py);
            dict.set_item("__module__", "mc")?;
            dict.set_item("__doc__", KIND_ERROR_DOC)?;
            let class = py
                .get_type::<PyType>()
                .call1(("KindError", bases, dict))?
                .downcast_into::<PyType>()?;
            Ok::<_, PyErr>(class.unbind())
        })
        .map(|class| class.bind(py))
}

/// Registers the exception classes on the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("PemError", py.get_type::<PemError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("PkiError", py.get_type::<PkiError>())?;
    m.add("IdentityError", py.get_type::<IdentityError>())?;
    m.add("LinkError", py.get_type::<LinkError>())?;
    m.add("SelectorError", py.get_type::<SelectorError>())?;
    m.add("MirrorError", py.get_type::<MirrorError>())?;
    m.add("TransportError", py.get_type::<TransportError>())?;
    m.add("RenderError", py.get_type::<RenderError>())?;
    m.add("KindError", kind_error(py)?)?;
    Ok(())
}

/// Structured attributes attached to an exception instance.
#[derive(Default)]
struct Attrs {
    field: Option<String>,
    block: Option<usize>,
    line: Option<usize>,
}

/// Converts an `mc_core::Error` into the matching Python exception, keeping the Rust message.
pub(crate) fn to_py(err: CoreError) -> PyErr {
    let message = err.to_string();
    let mut attrs = Attrs::default();
    let new: fn(String) -> PyErr = match &err {
        CoreError::PemNoCertificate { .. } => PemError::new_err,
        CoreError::PemStrayEnd { line, .. } => {
            attrs.line = Some(*line);
            PemError::new_err
        }
        CoreError::PemNotCertificate { block, line, .. }
        | CoreError::PemUnterminated { block, line, .. }
        | CoreError::PemBadBase64 { block, line, .. }
        | CoreError::CertificateDer { block, line, .. }
        | CoreError::NotCa { block, line, .. }
        | CoreError::AnchorValidity { block, line, .. } => {
            attrs.block = Some(*block);
            attrs.line = Some(*line);
            PemError::new_err
        }
        CoreError::LinkerdConfig { field, .. } => {
            attrs.field = Some(field.clone());
            ConfigError::new_err
        }
        CoreError::PkiOptions { field, .. } => {
            attrs.field = Some((*field).to_string());
            PkiError::new_err
        }
        CoreError::PkiSigner { .. } | CoreError::PkiGenerate { .. } => PkiError::new_err,
        CoreError::InvalidDnsName { .. }
        | CoreError::InvalidIdentity { .. }
        | CoreError::InvalidSpiffeId { .. } => IdentityError::new_err,
        CoreError::InvalidField { field, .. } | CoreError::MissingField { field, .. } => {
            attrs.field = Some(field.clone());
            LinkError::new_err
        }
        CoreError::InvalidDuration { .. } => LinkError::new_err,
        CoreError::InvalidSelector { field, .. } => {
            attrs.field = (!field.is_empty()).then(|| field.clone());
            SelectorError::new_err
        }
        CoreError::InvalidRemoteService { field, .. } => {
            attrs.field = Some(field.clone());
            MirrorError::new_err
        }
        CoreError::WrongKind { .. } | CoreError::Malformed { .. } => new_kind_error,
        CoreError::NotExported { .. }
        | CoreError::NoGateway { .. }
        | CoreError::TimeOutOfRange { .. } => MirrorError::new_err,
        CoreError::TransportPreface { .. }
        | CoreError::TransportHeaderTooLong { .. }
        | CoreError::TransportHeaderMalformed { .. }
        | CoreError::TransportHeaderPort { .. }
        | CoreError::TransportHeaderNameUtf8 { .. } => TransportError::new_err,
        CoreError::RenderValue { path, .. } => {
            attrs.field = Some(path.clone());
            RenderError::new_err
        }
        CoreError::RenderSet { .. } | CoreError::RenderSerialize { .. } => RenderError::new_err,
        // mc_core::Error is non-exhaustive: a variant added later is still an mc.Error.
        _ => Error::new_err,
    };
    with_attrs(new(message), attrs)
}

/// A `KindError` carrying `message` (falls back to `mc.Error` if the class cannot be made).
pub(crate) fn new_kind_error(message: String) -> PyErr {
    Python::with_gil(|py| match kind_error(py) {
        Ok(class) => PyErr::from_type(class.clone(), message),
        Err(_) => Error::new_err(message),
    })
}

/// Sets `field`, `block` and `line` on the exception instance (None when not applicable).
fn with_attrs(err: PyErr, attrs: Attrs) -> PyErr {
    Python::with_gil(|py| {
        let value = err.value(py);
        // Setting attributes on a fresh exception instance cannot fail in practice; if it
        // did, the exception is still raised with its message.
        let _ = value.setattr("field", attrs.field);
        let _ = value.setattr("block", attrs.block);
        let _ = value.setattr("line", attrs.line);
    });
    err
}

/// `Result<T, mc_core::Error>` → `PyResult<T>`.
pub(crate) trait IntoPyResult<T> {
    /// Converts the error into the matching `mc.Error` subclass.
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, CoreError> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
