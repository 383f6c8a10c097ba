//! Both ends of a record-protected connection with fixed keys, for the fuzz target
//! `tls_record` (fuzz/) and tests: a client that seals whatever records it is told to (any
//! content type, padding, key updates) and the gateway's [`Opener`]. Only built for tests
//! and with the `fuzzing` feature; not an API.

use ring::aead;

use super::{Direction, HEADER, Opener, Suite, TAG};
use crate::Result;

/// The client's sending side: seals records the gateway opens.
#[derive(Debug)]
pub struct Client(Direction);

/// A client and the gateway's opener sharing one traffic secret; `suite` picks the cipher
/// suite (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 by `suite % 3`).
pub fn pair(suite: u8) -> Result<(Client, Opener)> {
    let (suite, len) = match suite % 3 {
        0 => (Suite::Aes128Gcm, 32),
        1 => (Suite::Aes256Gcm, 48),
        _ => (Suite::Chacha20Poly1305, 32),
    };
    let secret: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
    Ok((
        Client(Direction::new(suite, secret.clone(), 0)?),
        Opener(Direction::new(suite, secret, 0)?),
    ))
}

impl Client {
    /// A whole record protecting `content` of `content_type`, followed by `padding` zeros
    /// (RFC 8446 §5.2). The length field is what the body takes, cut to 16 bits.
    pub fn seal(&mut self, content: &[u8], content_type: u8, padding: usize) -> Result<Vec<u8>> {
        let inner = content.len() + 1 + padding;
        let body = u16::try_from(inner + TAG).unwrap_or(u16::MAX).to_be_bytes();
        let header = [super::APPLICATION_DATA, 3, 3, body[0], body[1]];
        let mut record = Vec::with_capacity(HEADER + inner + TAG);
        record.extend_from_slice(&header);
        record.extend_from_slice(content);
        record.push(content_type);
        record.resize(HEADER + inner, 0);
        let nonce = self.0.nonce()?;
        let tag = self
            .0
            .key
            .seal_in_place_separate_tag(
                nonce,
                aead::Aad::from(header),
                record.get_mut(HEADER..).unwrap_or_default(),
            )
            .map_err(|_| super::record_error("sealing a record failed"))?;
        record.extend_from_slice(tag.as_ref());
        Ok(record)
    }

    /// Moves the client's sending key on, as after sending a key update.
    pub fn update(&mut self) -> Result<()> {
        self.0.update()
    }
}
