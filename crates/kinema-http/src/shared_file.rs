//! Content held in memory in a form the kernel can send without our copy:
//! a sealed memfd, plus a read-only mapping of it as `Bytes`.
//!
//! Why: writing a user-space buffer to a socket makes the kernel copy it
//! into socket buffers, then (on loopback, or into the NIC's DMA path) it is
//! copied or referenced again. `sendfile(2)` from a file instead hands the
//! file's pages to the socket by reference, as nginx does from the page
//! cache. A memfd is a file whose pages live only in memory, so a cache of
//! file contents can keep that property: every viewer is sent the same
//! pages, with no per-viewer copy in user space or into the socket.
//!
//! The memfd is sealed (no write, no shrink, no grow, no further seals)
//! before it is mapped, so its content can never change: the mapping is a
//! plain immutable `&[u8]` for paths that need bytes (HTTP/2, TLS,
//! multipart), and `sendfile` ranges always stay within its length.
//!
//! Linux only (memfd_create, file seals). What this is not: a file cache; it
//! holds one content, and whoever keeps it decides how long.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};

/// One immutable content in a sealed memfd; cloning shares it.
#[derive(Clone)]
pub struct SharedFile(Arc<Inner>);

struct Inner {
    memfd: File,
    /// The whole content, mapped read-only from `memfd`.
    view: Bytes,
}

/// The seals that make a memfd's content immutable for good.
const IMMUTABLE: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

impl SharedFile {
    /// Copies `content` into a new sealed memfd and maps it. This allocates
    /// and copies `content.len()` bytes of memory: for large contents, call
    /// it off the reactor (`spawn_blocking`).
    pub fn from_bytes(content: &[u8]) -> io::Result<Self> {
        let memfd = rustix::fs::memfd_create(
            "kinema-shared-file",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut memfd = File::from(memfd);
        // Sized first, so the writes below never grow the file piecemeal.
        memfd.set_len(content.len() as u64)?;
        memfd.write_all(content)?;
        rustix::fs::fcntl_add_seals(&memfd, IMMUTABLE)?;
        let view = map_sealed(&memfd)?;
        Ok(Self(Arc::new(Inner { memfd, view })))
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.0.view.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.0.view.is_empty()
    }

    /// The whole content as shared `Bytes` (the mapping, not a copy).
    pub fn bytes(&self) -> &Bytes {
        &self.0.view
    }

    /// `range` of the content, clamped to its length (so a slice never
    /// reaches past the end, whatever it is asked for).
    pub fn slice(&self, range: Range<u64>) -> FileSlice {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        FileSlice {
            file: self.clone(),
            range: start..end,
        }
    }

    /// The memfd, for `sendfile`.
    pub(crate) fn memfd(&self) -> BorrowedFd<'_> {
        self.0.memfd.as_fd()
    }
}

impl fmt::Debug for SharedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedFile({} bytes)", self.len())
    }
}

/// A range of a [`SharedFile`]: what a response body sends. Always within
/// the file ([`SharedFile::slice`] clamps).
#[derive(Clone)]
pub struct FileSlice {
    file: SharedFile,
    range: Range<u64>,
}

impl FileSlice {
    pub fn file(&self) -> &SharedFile {
        &self.file
    }

    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The slice's bytes, from the mapping (a reference count, no copy).
    pub fn bytes(&self) -> Bytes {
        self.file
            .bytes()
            .slice(self.range.start as usize..self.range.end as usize)
    }
}

impl fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileSlice({}..{} of {} bytes)",
            self.range.start,
            self.range.end,
            self.file.len()
        )
    }
}

/// Maps a sealed memfd read-only as `Bytes`; refuses one whose seals do not
/// make it immutable.
#[allow(
    unsafe_code,
    reason = "mapping a file is unsafe in general; the seals checked here make this one sound"
)]
fn map_sealed(memfd: &File) -> io::Result<Bytes> {
    let seals = rustix::fs::fcntl_get_seals(memfd)?;
    if !seals.contains(IMMUTABLE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to map a memfd that is not sealed against writes and resizing",
        ));
    }
    let length = memfd.metadata()?.len();
    if length == 0 {
        // mmap refuses empty mappings; there is nothing to map anyway.
        return Ok(Bytes::new());
    }
    let length = usize::try_from(length)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "memfd too large to map"))?;
    // SAFETY: `Mmap` is unsound only if the mapped file changes while it is
    // mapped (the slice it hands out would change under us), or shrinks
    // (touching the lost pages raises SIGBUS). The memfd carries
    // F_SEAL_WRITE, F_SEAL_SHRINK and F_SEAL_GROW, checked just above, and
    // F_SEAL_SEAL, so no one (this process or another holding the fd) can
    // ever write to it, truncate it or lift the seals: its content is fixed
    // for the life of the mapping. The mapping is read-only and `length` is
    // the file's sealed length.
    let mapping = unsafe { memmap2::MmapOptions::new().len(length).map(memfd)? };
    Ok(Bytes::from_owner(mapping))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn holds_the_content_it_was_given() {
        let data = content(100_000);
        let file = SharedFile::from_bytes(&data).unwrap();
        assert_eq!(file.len(), 100_000);
        assert!(file.bytes()[..] == data[..]);
        let slice = file.slice(1000..2000);
        assert_eq!(slice.len(), 1000);
        assert!(slice.bytes()[..] == data[1000..2000]);
    }

    #[test]
    fn a_slice_never_reaches_past_the_end() {
        let file = SharedFile::from_bytes(&content(10)).unwrap();
        assert_eq!(file.slice(5..50).range(), 5..10);
        assert_eq!(file.slice(20..30).range(), 10..10);
        assert!(file.slice(20..30).is_empty());
    }

    #[test]
    fn an_empty_content_maps_to_no_bytes() {
        let file = SharedFile::from_bytes(b"").unwrap();
        assert!(file.is_empty());
        assert!(file.bytes().is_empty());
    }

    #[test]
    fn the_memfd_refuses_writes_and_resizing() {
        let file = SharedFile::from_bytes(&content(4096)).unwrap();
        let seals = rustix::fs::fcntl_get_seals(file.memfd()).unwrap();
        assert!(seals.contains(IMMUTABLE), "{seals:?}");
        let error = rustix::io::pwrite(file.memfd(), b"x", 0).unwrap_err();
        assert_eq!(error, rustix::io::Errno::PERM);
        let error = rustix::fs::ftruncate(file.memfd(), 1).unwrap_err();
        assert_eq!(error, rustix::io::Errno::PERM);
        assert!(file.bytes()[..] == content(4096)[..]);
    }

    #[test]
    fn an_unsealed_memfd_is_not_mapped() {
        let memfd = File::from(
            rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .unwrap(),
        );
        memfd.set_len(10).unwrap();
        let error = map_sealed(&memfd).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
