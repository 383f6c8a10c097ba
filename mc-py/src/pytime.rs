//! Conversions between Rust times and Python `datetime` / `timedelta`.
//!
//! Datetimes handed to Python are timezone-aware UTC; datetimes received must be aware (a naive
//! datetime is ambiguous, so it is refused rather than guessed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDateTime, PyTzInfo};

const MICROS_PER_DAY: i128 = 86_400 * 1_000_000;

/// 1970-01-01T00:00:00Z as a Python datetime.
fn epoch(py: Python<'_>) -> PyResult<Bound<'_, PyDateTime>> {
    static EPOCH: GILOnceCell<Py<PyDateTime>> = GILOnceCell::new();
    let epoch = EPOCH.get_or_try_init(py, || {
        let utc = PyTzInfo::utc(py)?;
        Ok::<_, PyErr>(PyDateTime::new(py, 1970, 1, 1, 0, 0, 0, 0, Some(&utc))?.unbind())
    })?;
    Ok(epoch.bind(py).clone())
}

/// A `SystemTime` as an aware UTC `datetime` (also before 1970).
pub(crate) fn to_datetime(py: Python<'_>, t: SystemTime) -> PyResult<Bound<'_, PyAny>> {
    let epoch = epoch(py)?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => epoch.add(after),
        Err(before) => epoch.sub(before.duration()),
    }
}

/// An aware `datetime` as a `SystemTime`.
pub(crate) fn from_datetime(value: &Bound<'_, PyAny>, what: &str) -> PyResult<SystemTime> {
    let py = value.py();
    let datetime_class = py.import("datetime")?.getattr("datetime")?;
    if !value.is_instance(&datetime_class)? {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a datetime, got {}",
            value.get_type().name()?
        )));
    }
    if value.call_method0("utcoffset")?.is_none() {
        return Err(PyValueError::new_err(format!(
            "{what}: the datetime is naive; fix: pass an aware datetime, e.g. \
             datetime.now(timezone.utc)"
        )));
    }
    let delta = value.sub(epoch(py)?)?;
    let days: i64 = delta.getattr("days")?.extract()?;
    let seconds: i64 = delta.getattr("seconds")?.extract()?;
    let micros: i64 = delta.getattr("microseconds")?.extract()?;
    let total =
        i128::from(days) * MICROS_PER_DAY + i128::from(seconds) * 1_000_000 + i128::from(micros);
    let magnitude = u64::try_from(total.unsigned_abs())
        .map(Duration::from_micros)
        .map_err(|_| PyOverflowError::new_err(format!("{what}: datetime out of range")))?;
    let t = if total >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    t.ok_or_else(|| PyOverflowError::new_err(format!("{what}: datetime out of range")))
}

/// An optional aware datetime, defaulting to the current time.
pub(crate) fn now_or(value: Option<&Bound<'_, PyAny>>) -> PyResult<SystemTime> {
    match value {
        Some(v) if !v.is_none() => from_datetime(v, "now"),
        _ => Ok(SystemTime::now()),
    }
}

/// A non-negative `timedelta` as a `Duration`.
pub(crate) fn from_timedelta(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    value.extract::<Duration>().map_err(|e| {
        PyValueError::new_err(format!(
            "{what}: expected a non-negative timedelta ({})",
            e.value(value.py())
        ))
    })
}
