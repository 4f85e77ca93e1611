//! Request coalescing: one origin fetch ("fill") per cache key at a time,
//! whose response head and body every concurrent request for that key
//! receives as it arrives.
//!
//! A fill is a shared, growing list of body chunks plus a `watch` channel
//! whose version bumps on every change. Readers subscribe, then look at the
//! state, then await the next change: no polling, no lost wake-up, and no
//! reader waits for the whole object before its first byte. A fill that
//! fails hands its error to every reader; a fill whose task dies without
//! finishing (a panic, a runtime shutdown) is failed by a drop guard, so no
//! reader can hang.
//!
//! A response only its leader will ever read (not shared, not stored) is
//! not buffered at all: its origin body is handed over with the head, and
//! the leader reads it at its own pace, so a slow client holds back the
//! origin instead of the fill holding the whole object in memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::origin::OriginError;
use crate::slice::{SliceMeta, Version};

/// What a fill learned about serving its object in slices, which lets a
/// seek into a large object fetch only the ranges it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Slicing {
    /// A whole response, answered and stored as such.
    #[default]
    Whole,
    /// A complete response too large to keep whole: its body was abandoned
    /// and the object is served from slices of this version.
    Large(Version),
    /// A checked slice of a large object (see [`crate::slice::check_slice`]).
    Slice(SliceMeta),
    /// The origin's answer to a slice request cannot be used (no validator,
    /// a `Content-Range` other than the one asked for, not storable): every
    /// reader forwards its own request.
    Refused,
}

/// The response head a fill received (or made, after a 304).
#[derive(Debug)]
pub struct FillHead {
    pub status: StatusCode,
    /// Without hop-by-hop fields.
    pub headers: HeaderMap,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    /// The Vary secondary key of the leader's request, `None` for
    /// `Vary: *`; a waiter whose request differs does not share.
    pub secondary_key: Option<Vec<(String, Option<String>)>>,
    /// False when the response belongs to the leader alone (private,
    /// Authorization, Set-Cookie, no-store, too large to store, `Vary: *`):
    /// waiters then fetch for themselves.
    pub shared: bool,
    /// Whether the response is being stored.
    pub stored: bool,
    /// The origin answered our conditional request with 304.
    pub validated: bool,
    /// Why it was not stored (`Cache-Status` detail).
    pub detail: Option<crate::policy::Detail>,
    pub slicing: Slicing,
}

/// A response body as a reader receives it; an error ends the response
/// as broken, never as complete.
pub type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// How a fill's body reaches its readers.
#[derive(Debug, Default)]
enum Delivery {
    /// Pushed into `chunks`, which every reader reads from byte 0.
    #[default]
    Chunks,
    /// Handed over for the one reader that takes it (see
    /// [`Fill::hand_over`]).
    HandedOver(SoleBody),
    /// The one reader took it.
    Taken,
}

struct SoleBody(BodyStream);

impl std::fmt::Debug for SoleBody {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SoleBody")
    }
}

#[derive(Debug, Default)]
struct State {
    head: Option<Arc<FillHead>>,
    delivery: Delivery,
    chunks: Vec<Bytes>,
    length: u64,
    done: bool,
    error: Option<OriginError>,
}

/// One in-flight fill.
#[derive(Debug)]
pub struct Fill {
    state: Mutex<State>,
    version: watch::Sender<u64>,
    /// Set when the fill turned out to predate a change of its object at
    /// the origin (see [`Fill::abandon`]).
    abandoned: AtomicBool,
    /// Set just before the last byte goes out (see [`Fill::seal`]).
    sealed: AtomicBool,
}

impl Default for Fill {
    fn default() -> Self {
        Self::new()
    }
}

impl Fill {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            version: watch::channel(0).0,
            abandoned: AtomicBool::new(false),
            sealed: AtomicBool::new(false),
        }
    }

    /// Marks the fill as begun before its object changed at the origin:
    /// the readers it has keep receiving what it fetches, but it stores
    /// nothing (the caller also takes it out of the coalescing table, so
    /// no new reader joins it).
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Closes the fill to new readers because its last byte is about to
    /// be pushed: a reader's response is complete with that byte, so a
    /// request that follows it is a new request, which must see the
    /// object as stored (or fetch anew), never this response again.
    pub fn seal(&self) {
        self.sealed.store(true, Ordering::Relaxed);
    }

    /// Whether a new reader may still join: not sealed, done, failed or
    /// abandoned.
    pub fn joinable(&self) -> bool {
        if self.abandoned() || self.sealed.load(Ordering::Relaxed) {
            return false;
        }
        let state = self.lock();
        !state.done && state.error.is_none()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation leaves the state consistent, so a poisoned lock
        // (a panic elsewhere) is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn changed(&self) {
        self.version.send_modify(|version| *version += 1);
    }

    pub fn publish_head(&self, head: FillHead) {
        self.lock().head = Some(Arc::new(head));
        self.changed();
    }

    /// Publishes the head of a response only one reader will read, with
    /// its body, which that reader then reads straight from the origin
    /// (paced by the reader, nothing retained); the fill itself is done.
    /// Head and body come together, so no reader that sees the head can
    /// find the body missing.
    pub fn hand_over(&self, head: FillHead, body: BodyStream) {
        {
            let mut state = self.lock();
            state.head = Some(Arc::new(head));
            state.delivery = Delivery::HandedOver(SoleBody(body));
            state.done = true;
        }
        self.changed();
    }

    /// Whether the body was handed over to one reader rather than pushed.
    pub fn handed_over(&self) -> bool {
        !matches!(self.lock().delivery, Delivery::Chunks)
    }

    pub fn push(&self, chunk: Bytes) {
        {
            let mut state = self.lock();
            state.length += chunk.len() as u64;
            state.chunks.push(chunk);
        }
        self.changed();
    }

    pub fn complete(&self) {
        self.lock().done = true;
        self.changed();
    }

    pub fn fail(&self, error: OriginError) {
        {
            let mut state = self.lock();
            if state.done || state.error.is_some() {
                return;
            }
            state.error = Some(error);
        }
        self.changed();
    }

    /// The body received so far as one buffer (called once the origin's
    /// body has ended, to store it).
    pub fn whole_body_now(&self) -> Bytes {
        concat(&self.lock().chunks)
    }

    /// The body received so far followed by `last`, a chunk not pushed
    /// yet, as one buffer: the whole object, to be stored before `last`
    /// reaches the readers and completes their responses.
    pub fn whole_body_ending_with(&self, last: &Bytes) -> Bytes {
        let state = self.lock();
        if state.chunks.is_empty() {
            return last.clone();
        }
        let mut whole = BytesMut::with_capacity(
            state.chunks.iter().map(Bytes::len).sum::<usize>() + last.len(),
        );
        for chunk in state.chunks.iter().chain(std::iter::once(last)) {
            whole.extend_from_slice(chunk);
        }
        whole.freeze()
    }

    /// Bytes received so far.
    pub fn length(&self) -> u64 {
        self.lock().length
    }

    /// Waits for the response head, or the error that ended the fill.
    pub async fn head(&self) -> Result<Arc<FillHead>, OriginError> {
        let mut receiver = self.version.subscribe();
        loop {
            {
                let state = self.lock();
                if let Some(head) = &state.head {
                    return Ok(head.clone());
                }
                if let Some(error) = &state.error {
                    return Err(error.clone());
                }
            }
            // The sender lives in `self`, so this cannot close while we wait.
            let _ = receiver.changed().await;
        }
    }

    /// Waits for the whole body (for range requests on a miss).
    pub async fn whole_body(&self) -> Result<Bytes, OriginError> {
        let mut receiver = self.version.subscribe();
        loop {
            {
                let state = self.lock();
                if !matches!(state.delivery, Delivery::Chunks) {
                    return Err(OriginError::Protocol(
                        "the body streams to one reader and is not buffered".into(),
                    ));
                }
                if state.done {
                    return Ok(concat(&state.chunks));
                }
                if let Some(error) = &state.error {
                    return Err(error.clone());
                }
            }
            let _ = receiver.changed().await;
        }
    }

    /// The body as a stream that yields each chunk as soon as it arrives;
    /// a failed fill ends it with an error, so the client sees a truncated
    /// response rather than a complete wrong one. A body handed over goes
    /// to the first reader that polls; any other gets an error.
    pub fn body(self: &Arc<Self>) -> BodyStream {
        let fill = self.clone();
        futures::stream::once(async move {
            // The head (or the error that ended the fill) tells how the
            // body comes: a handed-over body is published with the head.
            let _ = fill.head().await;
            let mut state = fill.lock();
            match std::mem::replace(&mut state.delivery, Delivery::Taken) {
                Delivery::Chunks => {
                    state.delivery = Delivery::Chunks;
                    drop(state);
                    fill.chunks()
                }
                Delivery::HandedOver(SoleBody(body)) => body,
                Delivery::Taken => futures::stream::iter([Err(std::io::Error::other(
                    "the body of this response went to another reader",
                ))])
                .boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    /// The pushed chunks as a stream, from byte 0.
    fn chunks(self: &Arc<Self>) -> BodyStream {
        let receiver = self.version.subscribe();
        futures::stream::unfold(
            (self.clone(), 0usize, receiver, false),
            |(fill, index, mut receiver, finished)| async move {
                if finished {
                    return None;
                }
                loop {
                    {
                        let state = fill.lock();
                        if index < state.chunks.len() {
                            let chunk = state.chunks[index].clone();
                            drop(state);
                            return Some((Ok(chunk), (fill, index + 1, receiver, false)));
                        }
                        if state.done {
                            return None;
                        }
                        if let Some(error) = &state.error {
                            let error = std::io::Error::other(error.to_string());
                            drop(state);
                            return Some((Err(error), (fill, index, receiver, true)));
                        }
                    }
                    let _ = receiver.changed().await;
                }
            },
        )
        .boxed()
    }
}

/// Fails the fill when dropped before it finished, so readers never hang
/// on a fill whose task is gone.
#[derive(Debug)]
pub struct FillGuard(pub Arc<Fill>);

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.0
            .fail(OriginError::Protocol("the fill was abandoned".into()));
    }
}

pub fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut whole = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for chunk in many {
                whole.extend_from_slice(chunk);
            }
            whole.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> FillHead {
        FillHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            request_time: SystemTime::now(),
            response_time: SystemTime::now(),
            secondary_key: Some(vec![]),
            shared: true,
            stored: true,
            validated: false,
            detail: None,
            slicing: Slicing::Whole,
        }
    }

    #[tokio::test]
    async fn readers_get_chunks_as_they_arrive_and_late_readers_get_all() {
        let fill = Arc::new(Fill::new());
        let early = fill.body();
        let waiter = {
            let fill = fill.clone();
            tokio::spawn(async move { fill.head().await.map(|head| head.status) })
        };
        fill.publish_head(head());
        assert_eq!(waiter.await.unwrap(), Ok(StatusCode::OK));
        fill.push(Bytes::from_static(b"ab"));
        let mut early = early;
        // The first chunk is readable before the fill completes.
        assert_eq!(
            early.next().await.unwrap().unwrap(),
            Bytes::from_static(b"ab")
        );
        assert_eq!(
            fill.whole_body_ending_with(&Bytes::from_static(b"cd")),
            Bytes::from_static(b"abcd")
        );
        fill.push(Bytes::from_static(b"cd"));
        fill.complete();
        assert_eq!(
            early.next().await.unwrap().unwrap(),
            Bytes::from_static(b"cd")
        );
        assert!(early.next().await.is_none());
        let late: Vec<Bytes> = fill.body().map(Result::unwrap).collect().await;
        assert_eq!(
            Fill::new().whole_body_ending_with(&Bytes::from_static(b"ab")),
            Bytes::from_static(b"ab")
        );
        assert_eq!(concat(&late), Bytes::from_static(b"abcd"));
        assert_eq!(
            fill.whole_body().await.unwrap(),
            Bytes::from_static(b"abcd")
        );
    }

    #[test]
    fn a_fill_is_joinable_until_its_last_byte_goes_out_or_it_ends() {
        let fill = Fill::new();
        fill.publish_head(head());
        fill.push(Bytes::from_static(b"ab"));
        assert!(fill.joinable());
        fill.seal();
        assert!(!fill.joinable());

        let completed = Fill::new();
        completed.complete();
        assert!(!completed.joinable());
        let failed = Fill::new();
        failed.fail(OriginError::Timeout);
        assert!(!failed.joinable());
        let abandoned = Fill::new();
        abandoned.abandon();
        assert!(!abandoned.joinable());
    }

    #[tokio::test]
    async fn failure_reaches_every_reader_and_abandonment_fails() {
        let fill = Arc::new(Fill::new());
        let waiting_head = {
            let fill = fill.clone();
            tokio::spawn(async move { fill.head().await })
        };
        drop(FillGuard(fill.clone()));
        assert!(waiting_head.await.unwrap().is_err());

        let fill = Arc::new(Fill::new());
        fill.publish_head(head());
        fill.push(Bytes::from_static(b"x"));
        let mut body = fill.body();
        fill.fail(OriginError::Timeout);
        assert!(body.next().await.unwrap().is_ok());
        assert!(body.next().await.unwrap().is_err());
        assert!(body.next().await.is_none());
        assert_eq!(fill.whole_body().await, Err(OriginError::Timeout));
    }

    #[tokio::test]
    async fn a_handed_over_body_goes_to_one_reader_and_is_not_retained() {
        let fill = Arc::new(Fill::new());
        let sole = fill.body();
        let mut head = head();
        head.shared = false;
        head.stored = false;
        let origin = futures::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("broken")),
        ])
        .boxed();
        fill.hand_over(head, origin);
        assert!(fill.handed_over());
        // The fill is done: abandoning it now fails nothing.
        drop(FillGuard(fill.clone()));
        // The first reader to poll gets the body, error included; any
        // other only an error.
        let sole: Vec<_> = sole.collect().await;
        assert!(matches!(sole.as_slice(), [Ok(chunk), Err(_)] if chunk == "ab"));
        let other: Vec<_> = fill.body().collect().await;
        assert!(matches!(other.as_slice(), [Err(_)]));
        assert_eq!(fill.length(), 0);
        assert!(fill.whole_body().await.is_err());
    }
}
