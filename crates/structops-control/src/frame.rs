//! The wire framing: `magic "SOPS" | u16 version (LE) | u32 payload length (LE) | payload`.
//!
//! The payload is one postcard-encoded [`Request`](crate::Request) or
//! [`Response`](crate::Response). The length is checked against a limit before any
//! allocation, so a hostile peer cannot make the host allocate more than the limit.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"SOPS";
/// The protocol version this crate speaks. A frame with another version is refused
/// ([`FrameError::Version`]); the version is bumped on any incompatible message change.
pub const VERSION: u16 = 2;
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 10;
/// The default payload limit (16 MiB): enough for a large `.bpf.o` with `vmlinux.h`
/// BTF (~1 MiB) and map dumps, small enough that a peer cannot exhaust memory.
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary.
    #[error("connection closed")]
    Closed,
    /// The connection ended (or timed out) inside a frame.
    #[error("truncated frame: {0}")]
    Truncated(#[source] io::Error),
    /// Another I/O error (including a write or read timeout).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The frame does not start with [`MAGIC`].
    #[error("bad magic {found:02x?}")]
    Magic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The frame's version is not [`VERSION`].
    #[error("unsupported protocol version {found} (this side speaks {VERSION})")]
    Version {
        /// The version found.
        found: u16,
    },
    /// The payload length is over the limit.
    #[error("frame of {len} bytes over the limit of {limit}")]
    TooLarge {
        /// The declared (or encoded) payload length.
        len: u64,
        /// The limit in force.
        limit: u32,
    },
    /// The payload does not decode as the expected message.
    #[error("undecodable payload: {0}")]
    Decode(#[source] postcard::Error),
    /// The message does not encode (never for this crate's types).
    #[error("unencodable message: {0}")]
    Encode(#[source] postcard::Error),
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` when the stream ends before the first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, FrameError> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => {
                return Err(FrameError::Truncated(io::Error::from(
                    io::ErrorKind::UnexpectedEof,
                )));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if done == 0 => return Err(FrameError::Io(e)),
            Err(e) => return Err(FrameError::Truncated(e)),
        }
    }
    Ok(true)
}

/// Reads one frame's payload. `FrameError::Closed` at a clean end of stream.
pub fn read_payload(r: &mut impl Read, limit: u32) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    if !read_full(r, &mut header)? {
        return Err(FrameError::Closed);
    }
    let [m0, m1, m2, m3, v0, v1, l0, l1, l2, l3] = header;
    let found = [m0, m1, m2, m3];
    if found != MAGIC {
        return Err(FrameError::Magic { found });
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != VERSION {
        return Err(FrameError::Version { found: version });
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len > limit {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            limit,
        });
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(r, &mut payload)? && len != 0 {
        return Err(FrameError::Truncated(io::Error::from(
            io::ErrorKind::UnexpectedEof,
        )));
    }
    Ok(payload)
}

/// Reads one frame and decodes its payload as `T`.
pub fn read_message<T: DeserializeOwned>(r: &mut impl Read, limit: u32) -> Result<T, FrameError> {
    let payload = read_payload(r, limit)?;
    decode(&payload)
}

/// Decodes a payload; trailing bytes are an error (a frame carries one message).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(msg)
}

/// Encodes `msg` into a complete frame (header and payload).
pub fn encode<T: Serialize>(msg: &T, limit: u32) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&VERSION.to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    let frame = postcard::to_extend(msg, frame).map_err(FrameError::Encode)?;
    let len = frame.len() - HEADER_LEN;
    let len32 = u32::try_from(len).ok().filter(|&l| l <= limit);
    let Some(len32) = len32 else {
        return Err(FrameError::TooLarge {
            len: len as u64,
            limit,
        });
    };
    let mut frame = frame;
    frame[6..HEADER_LEN].copy_from_slice(&len32.to_le_bytes());
    Ok(frame)
}

/// Encodes and writes one frame.
pub fn write_message<T: Serialize>(
    w: &mut impl Write,
    msg: &T,
    limit: u32,
) -> Result<(), FrameError> {
    let frame = encode(msg, limit)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}
