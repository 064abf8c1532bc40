//! The sync protocol's wire codec: one frame per request and per response, a little-endian
//! `u32` length followed by that many bytes of borsh.
//!
//! Reading never trusts the length: it is checked against the named maximum before anything
//! is read, and the buffer grows only as bytes actually arrive, so a peer that announces a
//! large frame and sends nothing costs nothing. Every malformed frame is a typed
//! [`CodecError`], which the service counts against the peer.
//!
//! A malformed *request* is returned as [`RequestFrame::Invalid`] rather than as an error:
//! libp2p's request-response drops inbound read errors without telling the behaviour's user,
//! so an error would hide the sender from the ban logic. A malformed *response* is an
//! `io::Error` of kind `InvalidData` carrying the [`CodecError`]; outbound failures are
//! reported.

use std::io;

use basalt_types::limits::BLOCK_BYTES_MAX;
use basalt_types::{decode, DecodeError};
use borsh::BorshSerialize;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

use crate::message::{SyncRequest, SyncResponse};

/// The sync protocol name.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/basalt/sync/1");

/// Largest encoded sync request. Requests are a tag and a few integers or a hash; 1 KiB leaves
/// room for growth and refuses anything else early.
pub const SYNC_REQUEST_BYTES_MAX: usize = 1024;

/// Largest encoded sync response: a few maximal blocks. Responders must trim a range to fit.
pub const SYNC_RESPONSE_BYTES_MAX: usize = BLOCK_BYTES_MAX * 4;

/// Most blocks in one [`SyncResponse::Blocks`]. Small blocks could otherwise pack many
/// thousands into one response; this keeps the work per response bounded.
pub const SYNC_BLOCKS_PER_RESPONSE_MAX: usize = 256;

/// Bytes reserved up front when reading a frame; the rest grows as data arrives.
const FRAME_PREALLOCATION_BYTES_MAX: usize = 64 * 1024;

/// Why a sync frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The announced length is above the maximum for this direction.
    #[error("frame of {len} bytes exceeds maximum {max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The frame is not a valid encoding.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// A blocks response with more blocks than allowed.
    #[error("{count} blocks exceed the maximum {max}")]
    TooManyBlocks {
        /// Blocks in the response.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// We were asked to send a value larger than the frame maximum.
    #[error("refusing to send {len} bytes, maximum {max}")]
    OutgoingTooLarge {
        /// Encoded length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

impl CodecError {
    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// True when the remote sent the bad bytes (as opposed to us refusing to send).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, CodecError::OutgoingTooLarge { .. })
    }

    /// The codec error inside `error`, if the codec produced it.
    pub fn from_io(error: &io::Error) -> Option<&CodecError> {
        error.get_ref()?.downcast_ref::<CodecError>()
    }
}

/// Encoded length of a response, without encoding it.
pub fn response_encoded_len(response: &SyncResponse) -> usize {
    // Measuring cannot fail for an in-memory value; treat a failure as "too large".
    borsh::object_length(response).unwrap_or(usize::MAX)
}

/// Check the limits that borsh itself does not know about.
fn check_response(response: &SyncResponse) -> Result<(), CodecError> {
    if let SyncResponse::Blocks(blocks) = response {
        if blocks.len() > SYNC_BLOCKS_PER_RESPONSE_MAX {
            return Err(CodecError::TooManyBlocks {
                count: blocks.len(),
                max: SYNC_BLOCKS_PER_RESPONSE_MAX,
            });
        }
    }
    Ok(())
}

/// Decode a request frame body.
pub fn decode_request(bytes: &[u8]) -> Result<SyncRequest, CodecError> {
    Ok(decode(bytes, SYNC_REQUEST_BYTES_MAX)?)
}

/// Decode a response frame body.
pub fn decode_response(bytes: &[u8]) -> Result<SyncResponse, CodecError> {
    let response = decode(bytes, SYNC_RESPONSE_BYTES_MAX)?;
    check_response(&response)?;
    Ok(response)
}

async fn read_frame<T>(io: &mut T, max: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = usize::try_from(u32::from_le_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max {
        return Err(CodecError::FrameTooLarge { len, max }.into_io());
    }
    let mut body = Vec::with_capacity(len.min(FRAME_PREALLOCATION_BYTES_MAX));
    // `len <= max`, which fits in u64 on every supported target.
    (&mut *io).take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {} of {len} bytes", body.len()),
        ));
    }
    Ok(body)
}

async fn write_frame<T, V>(io: &mut T, value: &V, max: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    V: BorshSerialize,
{
    let body = basalt_types::encode(value);
    let len = u32::try_from(body.len())
        .ok()
        .filter(|_| body.len() <= max)
        .ok_or_else(|| {
            CodecError::OutgoingTooLarge {
                len: body.len(),
                max,
            }
            .into_io()
        })?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(&body).await?;
    io.flush().await
}

/// A request as the codec sees it: what we send is always valid; what we receive may not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestFrame {
    /// A well-formed request.
    Valid(SyncRequest),
    /// A frame that is not a request (inbound only; the sender is counted and not answered).
    Invalid(CodecError),
}

/// The [`request_response::Codec`] of [`SYNC_PROTOCOL`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SyncCodec;

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = RequestFrame;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RequestFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = match read_frame(io, SYNC_REQUEST_BYTES_MAX).await {
            Ok(body) => body,
            Err(error) => {
                return match CodecError::from_io(&error) {
                    Some(codec) => Ok(RequestFrame::Invalid(codec.clone())),
                    None => Err(error),
                }
            }
        };
        Ok(match decode_request(&body) {
            Ok(request) => RequestFrame::Valid(request),
            Err(error) => RequestFrame::Invalid(error),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, SYNC_RESPONSE_BYTES_MAX).await?;
        decode_response(&body).map_err(CodecError::into_io)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: RequestFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            RequestFrame::Valid(request) => write_frame(io, &request, SYNC_REQUEST_BYTES_MAX).await,
            RequestFrame::Invalid(error) => Err(io::Error::new(io::ErrorKind::InvalidInput, error)),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        check_response(&response).map_err(CodecError::into_io)?;
        write_frame(io, &response, SYNC_RESPONSE_BYTES_MAX).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::Hash;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    fn read_request(bytes: Vec<u8>) -> io::Result<RequestFrame> {
        block_on(SyncCodec.read_request(&SYNC_PROTOCOL, &mut Cursor::new(bytes)))
    }

    fn invalid_request(bytes: Vec<u8>) -> CodecError {
        match read_request(bytes).unwrap() {
            RequestFrame::Invalid(error) => error,
            RequestFrame::Valid(request) => panic!("decoded garbage as {request:?}"),
        }
    }

    fn read_response(bytes: Vec<u8>) -> io::Result<SyncResponse> {
        block_on(SyncCodec.read_response(&SYNC_PROTOCOL, &mut Cursor::new(bytes)))
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            SyncRequest::Status,
            SyncRequest::BlocksByRange {
                from_height: 5,
                count: 10,
            },
            SyncRequest::BlockByHash(Hash([3; 32])),
        ] {
            let mut out = Cursor::new(Vec::new());
            let frame = RequestFrame::Valid(request);
            block_on(SyncCodec.write_request(&SYNC_PROTOCOL, &mut out, frame.clone())).unwrap();
            assert_eq!(read_request(out.into_inner()).unwrap(), frame);
        }
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            SyncResponse::Status {
                height: 9,
                block_id: Hash([1; 32]),
            },
            SyncResponse::Blocks(Vec::new()),
            SyncResponse::NotFound,
            SyncResponse::Refused,
        ] {
            let mut out = Cursor::new(Vec::new());
            block_on(SyncCodec.write_response(&SYNC_PROTOCOL, &mut out, response.clone())).unwrap();
            assert_eq!(read_response(out.into_inner()).unwrap(), response);
        }
    }

    fn codec_error(error: io::Error) -> CodecError {
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        CodecError::from_io(&error).cloned().unwrap()
    }

    #[test]
    fn oversize_length_is_refused_before_reading() {
        let bytes = (u32::MAX).to_le_bytes().to_vec();
        assert!(matches!(
            invalid_request(bytes.clone()),
            CodecError::FrameTooLarge { .. }
        ));
        assert!(matches!(
            codec_error(read_response(bytes).unwrap_err()),
            CodecError::FrameTooLarge { .. }
        ));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            invalid_request(frame(&[9, 9, 9])),
            CodecError::Decode(_)
        ));
        // Valid value followed by trailing bytes.
        assert!(matches!(
            invalid_request(frame(&[0, 0])),
            CodecError::Decode(DecodeError::TrailingBytes(1))
        ));
        // A blocks response announcing 2^32-1 blocks in 5 bytes.
        assert!(matches!(
            codec_error(read_response(frame(&[1, 255, 255, 255, 255])).unwrap_err()),
            CodecError::Decode(_)
        ));
    }

    #[test]
    fn truncated_frames_are_eof_not_invalid() {
        let mut bytes = frame(&[1, 7, 0, 0]);
        bytes.truncate(6);
        assert_eq!(
            read_request(bytes).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            read_request(vec![1, 0]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn random_frames_never_panic() {
        // A fixed xorshift stream: reproducible, no extra dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 64) as usize;
            let body: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 8) & 0xff) as u8)
                .collect();
            let _ = read_request(frame(&body));
            let _ = read_response(frame(&body));
            let _ = read_response(body);
        }
    }

    #[test]
    fn encoded_len_matches_encoding() {
        let response = SyncResponse::Status {
            height: 1,
            block_id: Hash::ZERO,
        };
        assert_eq!(
            response_encoded_len(&response),
            basalt_types::encode(&response).len()
        );
    }
}
