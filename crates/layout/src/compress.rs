//! Compression: sniffing it from bytes and decompressing streams.

use std::io::{self, Read};

use crate::Compression;

/// What the first bytes of a blob look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A known compression (`None` means a tar, or empty).
    Known(Compression),
    /// bzip2: readable by some tools, not by OCI.
    Bzip2,
    /// xz: readable by some tools, not by OCI.
    Xz,
    /// Neither compressed nor a tar.
    Unknown,
}

/// How many leading bytes [`sniff`] wants to decide (a tar header's magic is at 257).
pub const SNIFF_LEN: usize = 512;

/// Decide a blob's compression from its first bytes.
pub fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(&[0x1f, 0x8b]) {
        Sniffed::Known(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Sniffed::Known(Compression::Zstd)
    } else if head.starts_with(b"BZh") {
        Sniffed::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Sniffed::Xz
    } else if head.is_empty()
        || head.iter().all(|&b| b == 0)
        || (head.len() >= 262 && &head[257..262] == b"ustar")
    {
        Sniffed::Known(Compression::None)
    } else {
        Sniffed::Unknown
    }
}

/// Read until `buf` is full or EOF; returns how many bytes were read.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The largest zstd window the decoder accepts, as a power of two: 2^27 = 128 MiB, zstd's own
/// default and what `zstd -d` accepts without `--long`. A frame asking for more is refused
/// with [`WindowTooLarge`] rather than allocated.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// A zstd frame whose window is larger than [`ZSTD_WINDOW_LOG_MAX`] allows: the data may be
/// intact, but decoding it would take more memory than ocikit allows. Carried inside the
/// `io::Error` a decompressor returns.
#[derive(Debug, thiserror::Error)]
#[error("zstd window too large for the memory limit (a frame needs a window over {} MiB)", (1u64 << ZSTD_WINDOW_LOG_MAX) >> 20)]
pub struct WindowTooLarge;

/// Whether `e` (from a decompressor) is a [`WindowTooLarge`].
pub fn is_window_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<WindowTooLarge>())
}

/// zstd's decoder, with its "too much memory" error said as [`WindowTooLarge`].
struct ZstdReader<'a, R: Read> {
    inner: zstd::stream::read::Decoder<'a, io::BufReader<R>>,
}

impl<R: Read> Read for ZstdReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            // libzstd's ZSTD_error_frameParameter_windowTooLarge.
            if e.to_string().contains("requires too much memory") {
                io::Error::other(WindowTooLarge)
            } else {
                e
            }
        })
    }
}

/// A reader that decompresses `r` as `c` (multi-member gzip included).
pub fn decompressor<'a, R: Read + 'a>(r: R, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 17, r),
        )),
        Compression::Zstd => {
            let mut inner = zstd::stream::read::Decoder::new(r)?;
            inner.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(ZstdReader { inner })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zstd_window_over_the_limit_is_said_as_such() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.window_log(30).expect("window_log");
        enc.long_distance_matching(true).expect("ldm");
        std::io::Write::write_all(&mut enc, b"hello").expect("write");
        let frame = enc.finish().expect("finish");
        let mut out = Vec::new();
        let e = decompressor(&frame[..], Compression::Zstd)
            .expect("decoder")
            .read_to_end(&mut out)
            .expect_err("1 GiB window");
        assert!(is_window_too_large(&e), "{e}");
        assert_eq!(
            e.to_string(),
            "zstd window too large for the memory limit (a frame needs a window over 128 MiB)"
        );
        // At the limit it decodes.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.window_log(27).expect("window_log");
        std::io::Write::write_all(&mut enc, b"hello").expect("write");
        let frame = enc.finish().expect("finish");
        let mut out = Vec::new();
        decompressor(&frame[..], Compression::Zstd)
            .expect("decoder")
            .read_to_end(&mut out)
            .expect("decodes");
        assert_eq!(out, b"hello");
    }

    #[test]
    fn sniffs() {
        assert_eq!(
            sniff(&[0x1f, 0x8b, 8, 0]),
            Sniffed::Known(Compression::Gzip)
        );
        assert_eq!(
            sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Sniffed::Known(Compression::Zstd)
        );
        assert_eq!(sniff(b"BZh91AY"), Sniffed::Bzip2);
        assert_eq!(sniff(&[0u8; 1024]), Sniffed::Known(Compression::None));
        assert_eq!(sniff(b"hello"), Sniffed::Unknown);
        let mut tar = vec![0u8; 512];
        tar[0] = b'a';
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Sniffed::Known(Compression::None));
    }
}
