//! The upstream response as one request sees it: what the head of the fill
//! it started or joined means for its answer. The fill's own side (the
//! storability verdict, storing, slicing) is `origin_fill`'s; this side
//! chooses between a stale copy (the origin failed), slices (the object is
//! large), a fetch of its own (the response is not ours to share) and the
//! fill's response itself.

use super::*;

impl Edge {
    /// Waits for the fill's head and decides the next step: a response,
    /// slices, or a pass.
    pub(super) async fn upstream_response(
        &self,
        request: &RequestContext,
        answer: FillAnswer,
    ) -> Step {
        let FillAnswer {
            fill,
            waiter,
            candidate,
            forward,
        } = answer;
        let head = match fill.head().await {
            Ok(head) => head,
            Err(error) => {
                return Step::Respond(
                    self.stale_on_error(request, candidate.as_ref())
                        .unwrap_or_else(|| error_response(&error, forward)),
                );
            }
        };
        match &head.slicing {
            Slicing::Whole => {}
            Slicing::Large(version) if self.slicing() => {
                return Step::Slices(SliceStart {
                    known: Some(version.clone()),
                    first: None,
                });
            }
            Slicing::Slice(meta) if self.slicing() => {
                let first = slices::ObtainedSlice::from_fill(fill.clone(), &head, meta, waiter);
                return Step::Slices(SliceStart {
                    known: Some(meta.version.clone()),
                    first: Some(Box::new(first)),
                });
            }
            Slicing::Large(_) | Slicing::Slice(_) | Slicing::Refused => {
                return Step::Pass(CacheStatus::forward(forward).with_detail(Detail::SliceRefused));
            }
        }
        // A 5xx with Retry-After is a deliberate refusal by an origin that
        // is up (overload, admission: RFC 9110 §10.2.3, §15.6.4), not an
        // outage: it reaches the client as it is, never replaced by a
        // stale copy, which would start the very session it refused.
        if head.status.is_server_error()
            && !head.headers.contains_key(header::RETRY_AFTER)
            && let Some(response) = self.stale_on_error(request, candidate.as_ref())
        {
            return Step::Respond(response);
        }
        let shares = head.shared
            && head
                .secondary_key
                .as_ref()
                .is_some_and(|secondary| policy::vary_matches(secondary, &request.headers));
        if waiter && !shares {
            // Not ours to share (private, or varying on headers this
            // request sends differently): fetch for ourselves.
            return Step::Pass(CacheStatus::forward(forward).with_detail(Detail::NotShareable));
        }
        let mut status = CacheStatus::forward(forward);
        status.forward_status = Some(if head.validated {
            304
        } else {
            head.status.as_u16()
        });
        status.stored = head.stored;
        status.collapsed = waiter;
        status.detail = head.detail;
        let mut headers = head.headers.clone();
        let age = policy::current_age(
            &headers,
            head.request_time,
            head.response_time,
            self.clock.now(),
        );
        set_age(&mut headers, age);
        status.apply(&mut headers);
        Step::Respond(respond(request, head.status, headers, FillBody(fill)).await)
    }
}
