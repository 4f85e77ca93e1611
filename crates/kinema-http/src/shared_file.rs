//! Content held in memory in a form the kernel can send without our copy:
//! a file for `sendfile(2)`, plus the content as `Bytes` for the paths that
//! need bytes (HTTP/2, TLS, multipart).
//!
//! Why: writing a user-space buffer to a socket makes the kernel copy it
//! into socket buffers, then (on loopback, or into the NIC's DMA path) it is
//! copied or referenced again. `sendfile(2)` from a file instead hands the
//! file's pages to the socket by reference, so every viewer is sent the same
//! pages, with no per-viewer copy in user space or into the socket.
//!
//! The file is one of two kinds:
//!
//! - **A published file on a local disk**, open, with a copy of its content
//!   in memory ([`SharedFile::from_published`]). `sendfile` reads the
//!   kernel's page cache, which holds files in large folios: with a memfd
//!   (4 KiB shmem pages here) the page lookups were about 13% of the
//!   server's CPU at thousands of viewers, against about 9% from the page
//!   cache. A page the kernel has evicted would make `sendfile` wait for
//!   the disk on the reactor, so a response asks first
//!   ([`FileSlice::ready_to_send`], `cachestat(2)`): when a page is
//!   missing, that response is written from the copy in memory and the
//!   kernel is asked to read the file back in the background. (A page
//!   evicted between that question and the `sendfile` is still waited for;
//!   the window is one response.) The file is also asked, before each
//!   `sendfile`, whether it was written since it was read (its size and
//!   modification time, by `fstat`): a published file is never
//!   written, so one that was has been tampered with or damaged, and from
//!   then on the copy in memory (the bytes the caller checked) is sent
//!   instead, as HTTP/2 and TLS always send it.
//! - **A sealed memfd** ([`SharedFile::from_bytes`]), for content that has
//!   no local file (or when the kernel cannot report what its page cache
//!   holds, before Linux 6.5). It is sealed (no write, no shrink, no grow,
//!   no further seals) before it is mapped, so its content can never change:
//!   the mapping is a plain immutable `&[u8]`, and `sendfile` ranges always
//!   stay within its length.
//!
//! Linux only (memfd_create, file seals, cachestat). What this is not: a file
//! cache; it holds one content, and whoever keeps it decides how long.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rustix::fs::{Advice, MemfdFlags, SealFlags};

/// One immutable content, in memory and in a file `sendfile` can send it
/// from; cloning shares it.
#[derive(Clone)]
pub struct SharedFile(Arc<Inner>);

struct Inner {
    /// What `sendfile` reads: a sealed memfd or a published file.
    file: File,
    /// Where the content starts in `file` (a disk tier's file holds its
    /// metadata first; 0 for every other).
    offset: u64,
    /// The whole content: the memfd's read-only mapping, or the published
    /// file's content as read.
    view: Bytes,
    /// True for a published file, whose pages the kernel may evict.
    on_disk: bool,
    /// Set while a background read of the published file is under way, so
    /// the viewers that find it evicted ask for one read, not one each.
    reading_in: AtomicBool,
    /// A published file's state when its content was taken (`None` for a
    /// memfd, which cannot change).
    stamp: Option<DiskStamp>,
    /// Set once the published file was found written since: it is never
    /// sent by `sendfile` again.
    changed: AtomicBool,
}

/// What a write to a file changes: its size and its modification time.
/// (Not the change time: unlinking an unpublished video's files changes
/// it too, and those are still good to send.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DiskStamp {
    size: i64,
    modified: (i64, u64),
}

impl DiskStamp {
    fn of(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let stat = rustix::fs::fstat(fd)?;
        Ok(Self {
            size: stat.st_size,
            modified: (stat.st_mtime, stat.st_mtime_nsec as u64),
        })
    }
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
        Ok(Self::new(memfd, 0, view, None))
    }

    /// A published file and its `content`, as read from it: the file is
    /// sent from the page cache. The caller promises that the file is never
    /// written again (published files are not); a file whose length is not
    /// `content`'s is refused. When the kernel cannot say which pages of the
    /// file it holds (`cachestat(2)`, Linux 6.5), the content is copied into
    /// a memfd instead (see [`Self::from_bytes`]; call it off the reactor).
    pub fn from_published(file: File, content: Bytes) -> io::Result<Self> {
        Self::from_published_as_of(file, content, None)
    }

    /// [`Self::from_published`], for a `content` read when the file's
    /// modification time was `modified_before_read`: a file written since
    /// (even while it was being read) is never sent by `sendfile`.
    pub fn from_published_as_of(
        file: File,
        content: Bytes,
        modified_before_read: Option<std::time::SystemTime>,
    ) -> io::Result<Self> {
        Self::from_file_at(file, 0, content, modified_before_read)
    }

    /// [`Self::from_published_as_of`] for a file that holds `content` from
    /// byte `offset` to its end, as a disk tier's file holds its body after
    /// its metadata: `sendfile` then reads from `offset` on. The same
    /// promise: the file is never written again.
    pub fn from_file_at(
        file: File,
        offset: u64,
        content: Bytes,
        modified_before_read: Option<std::time::SystemTime>,
    ) -> io::Result<Self> {
        let mut stamp = DiskStamp::of(file.as_fd())?;
        if let Some(since_epoch) = modified_before_read
            .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
            && let Ok(seconds) = i64::try_from(since_epoch.as_secs())
        {
            stamp.modified = (seconds, u64::from(since_epoch.subsec_nanos()));
        }
        let length = u64::try_from(stamp.size).unwrap_or(u64::MAX);
        if length.checked_sub(offset) != Some(content.len() as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the file has {length} bytes but its content {} from byte {offset}",
                    content.len()
                ),
            ));
        }
        if cached_pages(file.as_fd(), 0..1).is_err() {
            return Self::from_bytes(&content);
        }
        Ok(Self::new(file, offset, content, Some(stamp)))
    }

    fn new(file: File, offset: u64, view: Bytes, stamp: Option<DiskStamp>) -> Self {
        Self(Arc::new(Inner {
            file,
            offset,
            view,
            on_disk: stamp.is_some(),
            reading_in: AtomicBool::new(false),
            stamp,
            changed: AtomicBool::new(false),
        }))
    }

    /// True once the published file was found written after its content
    /// was taken (checked before each `sendfile`): the caller may want to
    /// say so, and to check the file again.
    pub fn changed_on_disk(&self) -> bool {
        self.0.changed.load(Ordering::Relaxed)
    }

    /// Whether the published file is still as it was when its content was
    /// taken; latches `changed` when it is not.
    fn unchanged_on_disk(&self) -> bool {
        if self.0.changed.load(Ordering::Relaxed) {
            return false;
        }
        let Some(stamp) = self.0.stamp else {
            return true;
        };
        if DiskStamp::of(self.fd()).is_ok_and(|now| now == stamp) {
            return true;
        }
        if !self.0.changed.swap(true, Ordering::Relaxed) {
            tracing::error!(
                bytes = self.len(),
                "a published file was written after it was read; sending the checked copy from memory from now on"
            );
        }
        false
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

    /// The file, for `sendfile`.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.file.as_fd()
    }

    /// Where the content starts in [`Self::fd`]: byte `n` of the content is
    /// byte `offset + n` of the file.
    pub(crate) fn offset(&self) -> u64 {
        self.0.offset
    }

    /// See [`FileSlice::ready_to_send`].
    fn ready_to_send(&self, range: Range<u64>) -> bool {
        if !self.0.on_disk || range.is_empty() {
            return true;
        }
        if !self.unchanged_on_disk() {
            return false;
        }
        let page = rustix::param::page_size() as u64;
        let in_file = range.start + self.offset()..range.end + self.offset();
        let pages = in_file.end.div_ceil(page) - in_file.start / page;
        if cached_pages(self.fd(), in_file).is_ok_and(|cached| cached >= pages) {
            return true;
        }
        if !self.0.reading_in.swap(true, Ordering::AcqRel) {
            // WILLNEED starts readahead and does not wait for it, but it may
            // still block to allocate pages or queue the reads: off the
            // reactor. The whole file, as one segment is wanted whole.
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                let _ = rustix::fs::fadvise(this.fd(), 0, None, Advice::WillNeed);
                this.0.reading_in.store(false, Ordering::Release);
            });
        }
        false
    }
}

/// How many pages of `range` of `fd` are in the page cache (`cachestat(2)`;
/// fails with `ENOSYS` before Linux 6.5).
#[allow(
    unsafe_code,
    reason = "cachestat has no wrapper in libc or rustix yet; the call only reads and writes the two structs passed"
)]
fn cached_pages(fd: BorrowedFd<'_>, range: Range<u64>) -> io::Result<u64> {
    /// `struct cachestat_range` of <linux/mman.h>.
    #[repr(C)]
    struct CachestatRange {
        off: u64,
        len: u64,
    }
    /// `struct cachestat` of <linux/mman.h>.
    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// The same number on every architecture (the unified syscall table).
    const SYS_CACHESTAT: libc::c_long = 451;
    let request = CachestatRange {
        off: range.start,
        len: range.end - range.start,
    };
    let mut answer = Cachestat::default();
    // SAFETY: cachestat reads `request` and writes `answer`, both valid for
    // the duration of the call and laid out as the kernel's structs; `fd`
    // is a borrowed, open file descriptor. Flags must be 0.
    let result = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd.as_raw_fd(),
            &request as *const CachestatRange,
            &mut answer as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(answer.nr_cache)
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

    /// True when `sendfile` of this slice will not wait for a disk and will
    /// send the content: always for a memfd; for a published file, when it
    /// was not written since its content was taken and the kernel has every
    /// page of the slice in its page cache. When some are missing, the kernel is
    /// asked to read the file back in the background (on tokio's blocking
    /// pool: call this within a runtime), and the caller should write
    /// [`Self::bytes`] instead this time.
    pub fn ready_to_send(&self) -> bool {
        self.file.ready_to_send(self.range.clone())
    }

    /// The slice's bytes, from memory (a reference count, no copy).
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
        let seals = rustix::fs::fcntl_get_seals(file.fd()).unwrap();
        assert!(seals.contains(IMMUTABLE), "{seals:?}");
        let error = rustix::io::pwrite(file.fd(), b"x", 0).unwrap_err();
        assert_eq!(error, rustix::io::Errno::PERM);
        let error = rustix::fs::ftruncate(file.fd(), 1).unwrap_err();
        assert_eq!(error, rustix::io::Errno::PERM);
        assert!(file.bytes()[..] == content(4096)[..]);
    }

    #[test]
    fn a_published_file_of_another_length_is_refused() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&content(100)).unwrap();
        let error = SharedFile::from_published(file, Bytes::from(content(99))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_published_file_written_after_it_was_read_is_no_longer_sent_by_sendfile() {
        let data = content(100_000);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        // Dated in the past, so the write below changes the modification
        // time even within the clock's granularity.
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
        let shared =
            SharedFile::from_published(file.try_clone().unwrap(), Bytes::from(data.clone()))
                .unwrap();
        if !shared.0.on_disk {
            // No cachestat(2) here: a memfd copy, which cannot change.
            return;
        }
        assert!(!shared.changed_on_disk());
        std::os::unix::fs::FileExt::write_all_at(&file, b"X", 500).unwrap();
        assert!(!shared.slice(0..1000).ready_to_send());
        assert!(!shared.slice(5000..6000).ready_to_send());
        assert!(shared.changed_on_disk());
        // What is sent instead is the content as it was taken.
        assert!(shared.slice(0..1000).bytes()[..] == data[..1000]);
    }

    #[tokio::test]
    async fn a_published_file_written_while_it_was_read_is_never_sent_by_sendfile() {
        let data = content(100_000);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        file.set_modified(old).unwrap();
        let before_read = file.metadata().unwrap().modified().unwrap();
        // Written between the time taken and the stamp.
        file.set_modified(old + std::time::Duration::from_secs(1))
            .unwrap();
        let shared =
            SharedFile::from_published_as_of(file, Bytes::from(data), Some(before_read)).unwrap();
        if !shared.0.on_disk {
            return;
        }
        assert!(!shared.slice(0..1000).ready_to_send());
        assert!(shared.changed_on_disk());
    }

    #[test]
    fn a_file_holding_the_content_after_other_bytes_is_sent_from_its_offset() {
        let data = content(10_000);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"metadata").unwrap();
        file.write_all(&data).unwrap();
        let shared = SharedFile::from_file_at(file, 8, Bytes::from(data.clone()), None).unwrap();
        assert_eq!(shared.len(), 10_000);
        if shared.0.on_disk {
            assert_eq!(shared.offset(), 8);
            let mut sent = [0u8; 100];
            rustix::io::pread(shared.fd(), &mut sent, shared.offset() + 500).unwrap();
            assert!(sent[..] == data[500..600]);
        }
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"metadata").unwrap();
        file.write_all(&data).unwrap();
        let error = SharedFile::from_file_at(file, 7, Bytes::from(data), None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
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
