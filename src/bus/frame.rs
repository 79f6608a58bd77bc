//! Length-prefixed JSON frames: the wire format of the Unix-socket bus.
//!
//! A frame is a 4-byte big-endian length and that many bytes of JSON. JSON rather than a
//! binary codec because the messages are small beside the work they trigger, and an operator
//! can read them with `socat`; the length prefix makes reading one a single exact read.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted: a completion carries a result (<= 1 MB) and logs (<= 10 MB), as
/// JSON with escaping; anything larger is a broken or hostile peer.
pub const MAX_FRAME: usize = 24 * 1024 * 1024;

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bus connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("bus frame of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    #[error("bus frame is not valid: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Writes one frame and flushes it.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write(&mut a, &serde_json::json!({"x": 1})).await.unwrap();
        drop(a);
        let v: Option<serde_json::Value> = read(&mut b).await.unwrap();
        assert_eq!(v.unwrap()["x"], 1);
        let end: Option<serde_json::Value> = read(&mut b).await.unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn refuses_oversized_length() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let r: Result<Option<serde_json::Value>, _> = read(&mut b).await;
        assert!(matches!(r, Err(FrameError::TooLarge(_))));
    }
}
