//! The two halves of a connection after its hellos: [`FrameReader`], for the task that reads
//! it, and [`FrameWriter`], for its [`super::Writer`]. Each owns one direction of the socket
//! and of the codec, and its own buffer, so neither waits on the other.
//!
//! **An idle connection holds no buffer.** A read buffer is taken when bytes come and let go
//! once every byte in it was decoded; a write buffer is taken for the first frame of a burst
//! and let go once the burst is written out. A burst may grow either as far as it needs (a frame
//! of [`chat_proto::MAX_FRAME_LEN`] still fits), and one large frame does not pin that memory
//! for the rest of the connection.

use super::Secured;
use chat_proto::{Frame, FrameError, RekeyHandle, SecureDecoder, SecureEncoder};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// How much the first read of a burst asks the socket for.
const READ_SIZE: usize = 8 * 1024;
/// The room a read asks for at least, once a burst has a buffer.
const READ_MIN: usize = 1024;
/// The buffer the first frame of a burst is encoded into; it grows for more.
const WRITE_SIZE: usize = 1024;
/// How many bytes the writer gathers before it writes them out, within a burst.
pub const WRITE_BATCH: usize = 8 * 1024;

/// Splits a connection whose hellos are done into its reading and its writing half. Bytes
/// already read past the hello stay with the reader, and are decoded first.
pub fn split<In, Out>(framed: Secured<In, Out>) -> (FrameReader<In>, FrameWriter<Out>) {
    let parts = framed.into_parts();
    let (read_half, write_half) = parts.io.into_split();
    let (decoder, encoder) = parts.codec.split();
    let reader = FrameReader {
        io: read_half,
        decoder,
        buffer: kept(parts.read_buf),
        done: false,
    };
    let writer = FrameWriter {
        io: write_half,
        encoder,
        buffer: kept(parts.write_buf),
    };
    (reader, writer)
}

/// `buffer` if it holds bytes; otherwise no buffer at all.
fn kept(buffer: BytesMut) -> BytesMut {
    if buffer.is_empty() {
        BytesMut::new()
    } else {
        buffer
    }
}

/// Reads the frames of type `In` of one connection.
pub struct FrameReader<In> {
    io: OwnedReadHalf,
    decoder: SecureDecoder<In>,
    /// Bytes read but not decoded yet; no allocation while there are none.
    buffer: BytesMut,
    /// Set once the connection ended or failed: there are no more frames.
    done: bool,
}

impl<In> FrameReader<In>
where
    SecureDecoder<In>: Decoder<Item = In, Error = FrameError>,
{
    /// The next frame; `None` once the other side closed the connection (between frames) or
    /// after an error. Cancel-safe: dropped while it waits, it loses no byte.
    pub async fn next(&mut self) -> Option<Result<In, FrameError>> {
        while !self.done {
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => {}
                Err(err) => return self.fail(err),
            }
            if self.buffer.is_empty() {
                self.buffer = BytesMut::new();
            }
            if let Err(err) = self.io.readable().await {
                return self.fail(err.into());
            }
            let room = if self.buffer.capacity() == 0 {
                READ_SIZE
            } else {
                READ_MIN
            };
            self.buffer.reserve(room);
            // `read_buf` rather than `try_read_buf`: a read that fills less than the buffer
            // shows the socket drained, and `read_buf` then forgets the readiness, where
            // `try_read_buf` keeps it until a read fails with `WouldBlock`: one wasted system
            // call per burst, 45% of a server's reads under load.
            match self.io.read_buf(&mut self.buffer).await {
                Ok(0) if self.buffer.is_empty() => self.done = true,
                Ok(0) => {
                    let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "closed within a frame");
                    return self.fail(cut.into());
                }
                Ok(_) => {}
                Err(err) => return self.fail(err.into()),
            }
        }
        None
    }

    fn fail(&mut self, err: FrameError) -> Option<Result<In, FrameError>> {
        self.done = true;
        self.buffer = BytesMut::new();
        Some(Err(err))
    }
}

/// Encodes and writes the frames of type `Out` of one connection.
pub struct FrameWriter<Out> {
    io: OwnedWriteHalf,
    encoder: SecureEncoder<Out>,
    /// Frames encoded but not written yet; no allocation between bursts.
    buffer: BytesMut,
}

impl<Out: Frame> FrameWriter<Out> {
    /// A handle for asking the encoder to rekey before its next frame.
    pub fn rekey_handle(&self) -> RekeyHandle {
        self.encoder.rekey_handle()
    }

    /// Encodes `frame` after what is buffered, in one transport message with the frames fed
    /// before it where it fits (they are sealed together before they are written); nothing is
    /// written yet.
    pub fn feed(&mut self, frame: Out) -> Result<(), FrameError> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve(WRITE_SIZE);
        }
        self.encoder.feed(&frame, &mut self.buffer)
    }

    /// Writes out what is buffered if that is a batch already, so that a long burst does not
    /// gather without end. Dropped midway, it loses nothing: what is not written stays.
    pub async fn make_room(&mut self) -> Result<(), FrameError> {
        if self.buffer.len() >= WRITE_BATCH {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Writes out everything buffered, then lets go of the buffer: the burst is over. Dropped
    /// midway, it loses nothing: what is not written stays buffered.
    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.write_out().await?;
        self.buffer = BytesMut::new();
        Ok(())
    }

    /// Flushes, then shuts the sending direction of the socket.
    pub async fn close(&mut self) -> Result<(), FrameError> {
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    /// Seals the frames fed since the last write, then writes everything buffered. Only whole
    /// transport messages are ever written.
    async fn write_out(&mut self) -> Result<(), FrameError> {
        self.encoder.seal(&mut self.buffer)?;
        while !self.buffer.is_empty() {
            if self.io.write_buf(&mut self.buffer).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero).into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chat_proto::{HandshakeBuilder, Keypair, Pattern, SecureCodec, ServerFrame};
    use futures::{SinkExt, StreamExt};
    use rand_core::OsRng;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;
    use tokio_util::codec::Framed;

    pub(crate) type Conn = Secured<ServerFrame, ServerFrame>;

    /// Both ends of a loopback connection after an NX handshake, done on bytes.
    pub(crate) async fn connected() -> (Conn, Conn) {
        let server_key = Keypair::generate(&mut OsRng);
        let mut initiator = HandshakeBuilder::new(Pattern::Nx)
            .build_initiator(&mut OsRng)
            .unwrap();
        let mut responder = HandshakeBuilder::new(Pattern::Nx)
            .local_static(server_key)
            .build_responder(&mut OsRng)
            .unwrap();
        let first = initiator.write_message(&[]).unwrap();
        responder.read_message(&first).unwrap();
        let second = responder.write_message(&[]).unwrap();
        initiator.read_message(&second).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialed = TcpStream::connect(listener.local_addr().unwrap());
        let (dialed, accepted) = tokio::join!(dialed, listener.accept());
        let codec = |noise: chat_proto::HandshakeState| {
            SecureCodec::new(noise.into_transport().unwrap(), 1 << 20)
        };
        (
            Framed::new(dialed.unwrap(), codec(initiator)),
            Framed::new(accepted.unwrap().0, codec(responder)),
        )
    }

    fn closing(reason: &str) -> ServerFrame {
        ServerFrame::Closing {
            reason: reason.into(),
        }
    }

    #[tokio::test]
    async fn bytes_read_past_the_hello_are_decoded_first() {
        let (mut client, mut server) = connected().await;
        client.feed(closing("hello")).await.unwrap();
        client.feed(closing("right behind")).await.unwrap();
        SinkExt::<ServerFrame>::flush(&mut client).await.unwrap();
        let hello = server.next().await.unwrap().unwrap();
        assert_eq!(hello, closing("hello"));
        let (mut reader, _writer) = split(server);
        let next = timeout(Duration::from_secs(5), reader.next()).await;
        assert_eq!(next.unwrap().unwrap().unwrap(), closing("right behind"));
    }

    #[tokio::test]
    async fn frames_fed_together_are_sealed_in_one_message() {
        let (client, server) = connected().await;
        let (mut reader, _) = split(client);
        let (_, mut writer) = split(server);
        let frames: Vec<ServerFrame> = (0..20)
            .map(|idx| closing(&format!("frame {idx}")))
            .collect();
        for frame in &frames {
            writer.feed(frame.clone()).unwrap();
        }
        // One length prefix and one tag for all twenty: not yet encrypted, so not written.
        let fed = writer.buffer.len();
        writer.flush().await.unwrap();
        let one_message = 2 + 1 + 16;
        assert!(fed < 20 * (one_message + 9), "{fed} bytes fed");
        for frame in frames {
            assert_eq!(reader.next().await.unwrap().unwrap(), frame);
        }
    }

    #[tokio::test]
    async fn a_large_frame_crosses_and_its_buffers_are_let_go() {
        let (client, server) = connected().await;
        let (mut reader, _) = split(client);
        let (_, mut writer) = split(server);
        let large = closing(&"x".repeat(300_000));
        writer.feed(large.clone()).unwrap();
        writer.feed(closing("small")).unwrap();
        assert!(writer.buffer.len() > 300_000);
        writer.flush().await.unwrap();
        assert_eq!(writer.buffer.capacity(), 0);
        assert_eq!(reader.next().await.unwrap().unwrap(), large);
        assert_eq!(reader.next().await.unwrap().unwrap(), closing("small"));
        // Waiting for the next frame, the reader holds no buffer.
        assert!(timeout(Duration::from_millis(50), reader.next())
            .await
            .is_err());
        assert_eq!(reader.buffer.capacity(), 0);
        drop(writer);
        assert!(reader.next().await.is_none());
    }
}
