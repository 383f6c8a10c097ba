//! `mc.TransportHeader`: the `transport.l5d.io/v1` connection header.

use mc_core::transport::{self, Decoded, SessionProtocol};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{IntoPyResult as _, TransportError};

/// The header a client writes after negotiating ALPN `transport.l5d.io/v1`: the target port,
/// host name and session protocol.
///
/// >>> h = TransportHeader(8080, "web.shop.svc.cluster.local", "http2")
/// >>> TransportHeader.decode(h.encode()) == h
/// True
#[pyclass(module = "mc", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct TransportHeader {
    inner: transport::TransportHeader,
}

fn protocol_name(p: Option<SessionProtocol>) -> Option<&'static str> {
    p.map(|p| match p {
        SessionProtocol::Http1 => "http1",
        SessionProtocol::Http2 => "http2",
    })
}

fn parse_protocol(name: Option<&str>) -> PyResult<Option<SessionProtocol>> {
    match name {
        None | Some("opaque") => Ok(None),
        Some("http1") => Ok(Some(SessionProtocol::Http1)),
        Some("http2") => Ok(Some(SessionProtocol::Http2)),
        Some(other) => Err(PyValueError::new_err(format!(
            "protocol {other:?} is not a session protocol; fix: use \"http1\", \"http2\", or None \
             for an opaque TCP stream"
        ))),
    }
}

#[pymethods]
impl TransportHeader {
    /// Creates a header. `port` is 1-65535; `name` is the target host (None or "" for "this
    /// pod"); `protocol` is "http1", "http2" or None (opaque TCP).
    #[new]
    #[pyo3(signature = (port, name=None, protocol=None))]
    fn new(port: u16, name: Option<String>, protocol: Option<&str>) -> PyResult<Self> {
        if port == 0 {
            return Err(PyValueError::new_err(
                "port 0 cannot be sent; fix: use the target port, 1-65535",
            ));
        }
        Ok(TransportHeader {
            inner: transport::TransportHeader {
                port,
                name,
                protocol: parse_protocol(protocol)?,
            },
        })
    }

    /// The target port.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.port
    }

    /// The target host name, or None.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// "http1", "http2", or None for an opaque TCP stream.
    #[getter]
    fn protocol(&self) -> Option<&'static str> {
        protocol_name(self.inner.protocol)
    }

    /// The wire bytes: preface, 4-byte big-endian length, protobuf body.
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.encode())
    }

    /// Decodes exactly one header from `data` (bytes-like).
    ///
    /// Raises `mc.TransportError` when the bytes are malformed, when they end before the header
    /// does (its `needed` attribute says how many bytes are missing), or when bytes follow the
    /// header (use `decode_prefix` on a stream).
    #[staticmethod]
    fn decode(data: &[u8]) -> PyResult<TransportHeader> {
        match transport::decode(data).py_err()? {
            Decoded::Complete { header, consumed } if consumed == data.len() => {
                Ok(TransportHeader { inner: header })
            }
            Decoded::Complete { consumed, .. } => Err(TransportError::new_err(format!(
                "transport header: {} byte(s) follow the {consumed}-byte header; fix: pass only \
                 the header, or use TransportHeader.decode_prefix on a stream",
                data.len() - consumed
            ))),
            Decoded::Incomplete { needed } => Err(incomplete(data.len(), needed)),
        }
    }

    /// Decodes a header at the start of a stream buffer.
    ///
    /// Returns `(header, consumed)` when a whole header is present (application bytes start at
    /// `data[consumed:]`), or `(None, needed)` when at least `needed` more bytes must be read.
    /// Raises `mc.TransportError` as soon as the bytes cannot start a valid header.
    #[staticmethod]
    fn decode_prefix(data: &[u8]) -> PyResult<(Option<TransportHeader>, usize)> {
        Ok(match transport::decode(data).py_err()? {
            Decoded::Complete { header, consumed } => {
                (Some(TransportHeader { inner: header }), consumed)
            }
            Decoded::Incomplete { needed } => (None, needed),
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "TransportHeader(port={}, name={}, protocol={})",
            self.inner.port,
            self.inner.name.as_deref().into_pyobject(py)?.repr()?,
            protocol_name(self.inner.protocol)
                .into_pyobject(py)?
                .repr()?,
        ))
    }
}

/// The error for a buffer that ends inside a header; `needed` is set on the exception.
fn incomplete(have: usize, needed: usize) -> PyErr {
    let err = TransportError::new_err(format!(
        "transport header: incomplete, {have} byte(s) given and at least {needed} more needed; \
         fix: read more bytes from the stream before decoding"
    ));
    Python::with_gil(|py| {
        let _ = err.value(py).setattr("needed", needed);
    });
    err
}

/// Constants of the wire format.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TransportHeader>()?;
    m.add("TRANSPORT_ALPN", PyBytes::new(m.py(), transport::ALPN))?;
    m.add(
        "TRANSPORT_PREFACE",
        PyBytes::new(m.py(), transport::PREFACE),
    )?;
    m.add("TRANSPORT_MAX_HEADER_LEN", transport::MAX_HEADER_LEN)?;
    Ok(())
}
