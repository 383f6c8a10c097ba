//! A line-oriented PEM scanner that reports errors by block number and line.
//!
//! It accepts LF and CRLF line endings, blank lines, surrounding whitespace and arbitrary text
//! between blocks (as `openssl x509 -text` writes it). Inside a block only base64 lines and blank
//! lines are allowed.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::{Error, Result};

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    /// 1-based number of the block among all blocks of the input.
    pub(crate) number: usize,
    /// 1-based line of the BEGIN marker.
    pub(crate) line: usize,
    /// The block type, e.g. `CERTIFICATE`.
    pub(crate) label: String,
    /// The decoded body.
    pub(crate) der: Vec<u8>,
}

/// Standard alphabet; padding may be present or absent (some tools strip it).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Advice for a block whose type is not the one expected.
pub(crate) fn advice_for_label(label: &str) -> &'static str {
    if label.contains("PRIVATE KEY") {
        "it is a private key; fix: remove it, a trust bundle holds only public CA certificates \
         (and rotate that key if the file was shared)"
    } else if label == "TRUSTED CERTIFICATE" {
        "it is OpenSSL's trusted-certificate format; fix: convert it with \
         `openssl x509 -in ca.crt -out ca.pem` and use that"
    } else if label.contains("CERTIFICATE REQUEST") {
        "it is a certificate signing request; fix: use the certificate issued for it"
    } else if label.contains("PUBLIC KEY") {
        "it is a bare public key; fix: use the CA certificate that holds it"
    } else {
        "fix: remove the block, or replace it with the CA certificate it stands for"
    }
}

/// Scans `input` into PEM blocks.
///
/// `accept` is called with (label, block number, line) at each BEGIN marker, before the body is
/// read, so that a caller can reject an unwanted block type by name rather than by its content.
pub(crate) fn scan(
    input: &[u8],
    mut accept: impl FnMut(&str, usize, usize) -> Result<()>,
) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    let mut open: Option<OpenBlock> = None;
    let mut number = 0;
    let mut last_line = 0;
    // Editors on Windows may start the file with a UTF-8 byte-order mark.
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    for (index, raw) in input.split(|b| *b == b'\n').enumerate() {
        let line = index + 1;
        last_line = line;
        let text = raw.trim_ascii();
        match (marker(text), open.take()) {
            (Some(Marker::Begin(label)), None) => {
                number += 1;
                accept(&label, number, line)?;
                open = Some(OpenBlock::new(number, line, label));
            }
            (Some(Marker::Begin(_)), Some(block)) => {
                return Err(
                    block.unterminated(format!("before the next BEGIN line at line {line}"))
                );
            }
            (Some(Marker::End(label)), Some(block)) if label == block.label => {
                blocks.push(block.finish()?);
            }
            (Some(Marker::End(label)), Some(block)) => {
                return Err(Error::PemStrayEnd {
                    line,
                    what: format!(
                        "\"-----END {label}-----\" closes block {} opened as \"-----BEGIN {}-----\" at line {}",
                        block.number, block.label, block.line
                    ),
                });
            }
            (Some(Marker::End(label)), None) => {
                return Err(Error::PemStrayEnd {
                    line,
                    what: format!("\"-----END {label}-----\" has no BEGIN line before it"),
                });
            }
            (None, Some(mut block)) => {
                block.push_line(line, text)?;
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    if let Some(block) = open {
        return Err(block.unterminated(format!("before the end of input (line {last_line})")));
    }
    Ok(blocks)
}

/// Number of lines in `input`, as [`scan`] counts them (0 for empty input).
pub(crate) fn line_count(input: &[u8]) -> usize {
    if input.is_empty() {
        0
    } else {
        input.split(|b| *b == b'\n').count()
    }
}

enum Marker {
    Begin(String),
    End(String),
}

/// Recognises `-----BEGIN X-----` and `-----END X-----` (already trimmed).
fn marker(text: &[u8]) -> Option<Marker> {
    let inner = text.strip_prefix(b"-----")?.strip_suffix(b"-----")?;
    if let Some(label) = inner.strip_prefix(b"BEGIN ") {
        Some(Marker::Begin(String::from_utf8_lossy(label).into_owned()))
    } else {
        inner
            .strip_prefix(b"END ")
            .map(|label| Marker::End(String::from_utf8_lossy(label).into_owned()))
    }
}

/// A block whose END marker has not been seen yet.
struct OpenBlock {
    number: usize,
    line: usize,
    label: String,
    body: String,
    /// (line number, offset in `body` where that line starts).
    starts: Vec<(usize, usize)>,
}

impl OpenBlock {
    fn new(number: usize, line: usize, label: String) -> Self {
        OpenBlock {
            number,
            line,
            label,
            body: String::new(),
            starts: Vec::new(),
        }
    }

    fn push_line(&mut self, line: usize, text: &[u8]) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        if let Some(column) = text.iter().position(|b| !is_base64(*b)) {
            let found = text.get(column).copied().unwrap_or_default();
            return Err(self.bad_base64(
                line,
                format!(
                    "character {:?} at column {} is not base64",
                    char::from(found),
                    column + 1
                ),
            ));
        }
        self.starts.push((line, self.body.len()));
        // All bytes are ASCII base64 characters, checked above.
        self.body.push_str(&String::from_utf8_lossy(text));
        Ok(())
    }

    fn finish(self) -> Result<Block> {
        if self.body.is_empty() {
            return Err(self.bad_base64(
                self.line,
                "the block has no content between BEGIN and END".into(),
            ));
        }
        match ENGINE.decode(&self.body) {
            Ok(der) => Ok(Block {
                number: self.number,
                line: self.line,
                label: self.label,
                der,
            }),
            Err(err) => {
                let (offset, reason) = describe(&err, self.body.len());
                let line = self.line_of(offset);
                Err(self.bad_base64(line, reason))
            }
        }
    }

    /// The input line holding body offset `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.starts
            .iter()
            .take_while(|(_, start)| *start <= offset)
            .last()
            .map_or(self.line, |(line, _)| *line)
    }

    fn bad_base64(&self, line: usize, reason: String) -> Error {
        Error::PemBadBase64 {
            block: self.number,
            line,
            reason,
        }
    }

    fn unterminated(self, why: String) -> Error {
        Error::PemUnterminated {
            block: self.number,
            line: self.line,
            label: self.label,
            why,
        }
    }
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

/// Offset in the body and a human reason for a base64 error.
fn describe(err: &base64::DecodeError, len: usize) -> (usize, String) {
    use base64::DecodeError as E;
    let last = len.saturating_sub(1);
    match err {
        E::InvalidByte(offset, byte) if *byte == b'=' => {
            (*offset, "padding '=' in the middle of the data".to_string())
        }
        E::InvalidByte(offset, byte) => (
            *offset,
            format!("invalid character {:?}", char::from(*byte)),
        ),
        E::InvalidLength(n) => (
            last,
            format!(
                "{n} base64 characters cannot encode whole bytes (a line is missing or cut short)"
            ),
        ),
        E::InvalidLastSymbol(offset, _) => (
            *offset,
            "the last character has bits that do not belong to the data (the text was altered)"
                .to_string(),
        ),
        E::InvalidPadding => (last, "wrong padding at the end of the data".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "aGVsbG8gd29ybGQ="; // "hello world"

    fn any(_: &str, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    /// The (block, line, reason) of the base64 error `input` must produce.
    fn bad_base64(input: &[u8]) -> (usize, usize, String) {
        match scan(input, any) {
            Err(Error::PemBadBase64 {
                block,
                line,
                reason,
            }) => (block, line, reason),
            other => panic!("expected a base64 error, got {other:?}"),
        }
    }

    fn block(label: &str, body: &str) -> String {
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    #[test]
    fn decodes_blocks_with_numbers_and_lines() {
        let input = format!("{}{}", block("A", BODY), block("B", "AQID"));
        let blocks = scan(input.as_bytes(), any).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            (blocks[0].number, blocks[0].line, blocks[0].label.as_str()),
            (1, 1, "A")
        );
        assert_eq!(blocks[0].der, b"hello world");
        assert_eq!(
            (blocks[1].number, blocks[1].line, blocks[1].label.as_str()),
            (2, 4, "B")
        );
        assert_eq!(blocks[1].der, [1, 2, 3]);
    }

    #[test]
    fn accepts_crlf_blank_lines_indentation_and_text_between_blocks() {
        let input = format!(
            "Certificate:\r\n    Data: something\r\n\r\n  -----BEGIN A-----  \r\naGVsbG8g\r\n\r\nd29ybGQ=\r\n-----END A-----\r\nsome text\r\n{}",
            block("B", "AQID").replace('\n', "\r\n")
        );
        let blocks = scan(input.as_bytes(), any).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].line, 4);
        assert_eq!(blocks[0].der, b"hello world");
        assert_eq!(blocks[1].line, 10);
    }

    #[test]
    fn accepts_a_leading_byte_order_mark() {
        let input = format!("\u{feff}{}", block("A", BODY));
        let blocks = scan(input.as_bytes(), any).unwrap();
        assert_eq!(
            (blocks[0].line, blocks[0].der.as_slice()),
            (1, &b"hello world"[..])
        );
    }

    #[test]
    fn accepts_missing_padding() {
        let blocks = scan(block("A", "aGVsbG8gd29ybGQ").as_bytes(), any).unwrap();
        assert_eq!(blocks[0].der, b"hello world");
    }

    #[test]
    fn empty_and_text_only_input_give_no_blocks() {
        assert!(scan(b"", any).unwrap().is_empty());
        assert!(
            scan(b"just text\n-----not a marker\n", any)
                .unwrap()
                .is_empty()
        );
        assert_eq!(line_count(b""), 0);
        assert_eq!(line_count(b"a\nb"), 2);
    }

    #[test]
    fn accept_callback_rejects_before_the_body_is_read() {
        let input = format!("text\n{}", block("PRIVATE KEY", "not base64 at all!"));
        let mut seen = Vec::new();
        let err = scan(input.as_bytes(), |label, number, line| {
            seen.push((label.to_string(), number, line));
            Err(Error::PemStrayEnd {
                line,
                what: "rejected".into(),
            })
        })
        .unwrap_err();
        assert_eq!(seen, vec![("PRIVATE KEY".to_string(), 1, 2)]);
        assert!(matches!(err, Error::PemStrayEnd { line: 2, .. }));
    }

    #[test]
    fn bad_character_names_block_line_and_column() {
        let input = format!(
            "{}-----BEGIN A-----\naGVs\naG*s\n-----END A-----\n",
            block("A", BODY)
        );
        let (block, line, reason) = bad_base64(input.as_bytes());
        assert_eq!((block, line), (2, 6));
        assert_eq!(reason, "character '*' at column 3 is not base64");
    }

    #[test]
    fn padding_in_the_middle_names_its_line() {
        let input = "-----BEGIN A-----\naGVsbG8=\nd29ybGQ=\n-----END A-----\n";
        let (block, line, reason) = bad_base64(input.as_bytes());
        assert_eq!((block, line), (1, 2));
        assert!(reason.contains("padding"), "{reason}");
    }

    #[test]
    fn truncated_base64_is_reported_on_the_last_line() {
        let input = "-----BEGIN A-----\naGVsbG8g\nd29yb\n-----END A-----\n";
        let (block, line, reason) = bad_base64(input.as_bytes());
        assert_eq!((block, line), (1, 3));
        assert!(reason.contains("cut short"), "{reason}");
    }

    #[test]
    fn empty_block_is_an_error() {
        let err = scan(b"-----BEGIN A-----\n\n-----END A-----\n", any).unwrap_err();
        assert!(
            matches!(&err, Error::PemBadBase64 { block: 1, line: 1, reason } if reason.contains("no content")),
            "{err:?}"
        );
    }

    #[test]
    fn missing_end_at_eof_and_before_next_begin() {
        let err = scan(b"\n-----BEGIN A-----\naGVs\n", any).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PEM block 1 (line 2): \"-----BEGIN A-----\" is not closed before the end of input (line 4); \
             fix: add \"-----END A-----\" after the base64 lines (the file may be truncated or two \
             files were pasted into each other)"
        );
        let err = scan(b"-----BEGIN A-----\naGVs\n-----BEGIN B-----\n", any).unwrap_err();
        assert!(
            matches!(&err, Error::PemUnterminated { block: 1, line: 1, why, .. } if why == "before the next BEGIN line at line 3"),
            "{err:?}"
        );
    }

    #[test]
    fn stray_and_mismatched_end_lines() {
        let err = scan(b"text\n-----END A-----\n", any).unwrap_err();
        assert!(
            matches!(&err, Error::PemStrayEnd { line: 2, what } if what.contains("no BEGIN")),
            "{err:?}"
        );
        let err = scan(b"-----BEGIN A-----\naGVs\n-----END B-----\n", any).unwrap_err();
        assert!(
            matches!(&err, Error::PemStrayEnd { line: 3, what } if what.contains("opened as \"-----BEGIN A-----\" at line 1")),
            "{err:?}"
        );
    }
}
