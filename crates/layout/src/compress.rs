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

/// A reader that decompresses `r` as `c` (multi-member gzip included).
pub fn decompressor<'a, R: Read + 'a>(r: R, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 17, r),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
