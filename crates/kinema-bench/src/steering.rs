//! Content steering as players follow it: the steering manifest (HLS
//! Content Steering, draft-pantos-hls-rfc8216bis §4.4.6.6 and Apple's
//! specification; DASH-IF CTS 001), its reloads, and which pathway a
//! viewer uses, as hls.js's content-steering controller decides it.
//!
//! The viewer asks the steering server with `_HLS_pathway` and
//! `_HLS_throughput` (or `_DASH_pathway` and `_DASH_throughput`), reloads
//! after `TTL` from `RELOAD-URI` (resolved against the URL the manifest
//! came from), and plays the first pathway of `PATHWAY-PRIORITY` that it
//! knows and that is not in its penalty box. A pathway whose request failed
//! goes into the box for [`PENALTY`]; the next one in priority serves at
//! once. A 410 stops steering (the last priority stays in force); a 429
//! waits its `Retry-After`.
//!
//! `PATHWAY-CLONES` (pathways a steering server makes up from another's
//! URIs) are not followed: a pathway the presentation does not carry is
//! passed over in the priority, as kinema's edges write one variant set
//! per node.
//!
//! What it is not: I/O. The viewer fetches; this module reads what came
//! back and decides. Every input is bounded, and a malformed manifest is
//! refused with a reason the viewer counts as a warning, never a panic.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::presentation::Format;

/// Largest steering manifest read (a real one is a few hundred bytes).
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Most pathways a priority list, or a presentation, may name.
pub const MAX_PATHWAYS: usize = 32;
/// Longest pathway id (the specifications allow a short token).
pub const MAX_PATHWAY_ID_LEN: usize = 128;
/// `TTL` is clamped to this range: a zero TTL would reload in a loop, a
/// huge one would never move a viewer.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(600);
/// A manifest without `TTL` is reloaded after 300 s (the specifications'
/// default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// How long a failed pathway stays out of use (hls.js: 300 s).
pub const PENALTY: Duration = Duration::from_secs(300);
/// The wait after a failed steering request before the next try.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// The longest `Retry-After` a 429 may ask for; longer waits are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A steering manifest, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SteeringManifest {
    pub ttl: Duration,
    /// Already resolved against the manifest's URL.
    pub reload: Option<Url>,
    pub priority: Vec<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "VERSION")]
    version: Option<u64>,
    #[serde(rename = "TTL")]
    ttl: Option<f64>,
    #[serde(rename = "RELOAD-URI")]
    reload_uri: Option<String>,
    #[serde(rename = "PATHWAY-PRIORITY")]
    pathway_priority: Option<Vec<String>>,
    #[serde(rename = "SERVICE-LOCATION-PRIORITY")]
    service_location_priority: Option<Vec<String>>,
}

/// Whether `id` is a pathway id a viewer accepts: short, printable ASCII.
pub fn valid_pathway_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PATHWAY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b',')
}

/// Reads a steering manifest fetched from `url`.
pub fn parse_manifest(body: &[u8], url: &Url) -> Result<SteeringManifest, String> {
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "steering manifest is larger than {MAX_MANIFEST_BYTES} bytes"
        ));
    }
    let raw: RawManifest = serde_json::from_slice(body)
        .map_err(|error| format!("steering manifest is not the expected JSON: {error}"))?;
    if raw.version != Some(1) {
        return Err(format!(
            "steering manifest VERSION is {:?}, not 1",
            raw.version
        ));
    }
    let ttl = match raw.ttl {
        None => DEFAULT_TTL,
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(MAX_TTL.as_secs_f64())).clamp(MIN_TTL, MAX_TTL)
        }
        Some(seconds) => return Err(format!("steering manifest TTL {seconds} is not a duration")),
    };
    let reload = match raw.reload_uri {
        None => None,
        Some(reference) => Some(url.join(&reference).map_err(|error| {
            format!("steering manifest RELOAD-URI {reference:?} is not a valid reference: {error}")
        })?),
    };
    let priority = raw
        .pathway_priority
        .or(raw.service_location_priority)
        .ok_or("steering manifest has no PATHWAY-PRIORITY")?;
    if priority.is_empty() || priority.len() > MAX_PATHWAYS {
        return Err(format!(
            "steering manifest PATHWAY-PRIORITY lists {} pathways, not 1 to {MAX_PATHWAYS}",
            priority.len()
        ));
    }
    if let Some(bad) = priority.iter().find(|id| !valid_pathway_id(id)) {
        return Err(format!(
            "steering manifest names an invalid pathway {:?}",
            bad.chars().take(40).collect::<String>()
        ));
    }
    Ok(SteeringManifest {
        ttl,
        reload,
        priority,
    })
}

/// What a viewer does after a steering request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A manifest was applied.
    Applied,
    /// A 410: steering stops for the rest of the session.
    Gone,
    /// Anything else: tried again later.
    Failed,
}

/// One viewer's steering state.
#[derive(Debug, Clone)]
pub struct SteeringState {
    format: Format,
    /// The URL the next steering request goes to (without the player's
    /// query parameters).
    next_url: Url,
    /// The pathways the presentation carries, in its order.
    known: Vec<String>,
    /// The last applied priority; until one is, the presentation's order
    /// with its declared pathway first.
    priority: Vec<String>,
    current: String,
    /// Pathway → the second its penalty ends.
    penalties: Vec<(String, f64)>,
    /// Second of the next reload; `None` once steering stopped.
    reload_at: Option<f64>,
}

impl SteeringState {
    /// Steering for a presentation whose pathways are `known` (non-empty),
    /// starting on `initial` (the manifest's `PATHWAY-ID`, or
    /// `defaultServiceLocation`, when it names a known one), with the
    /// steering server at `server` (resolved against the manifest's URL).
    pub fn new(format: Format, server: Url, known: Vec<String>, initial: Option<&str>) -> Self {
        let current = initial
            .filter(|id| known.iter().any(|k| k == id))
            .map_or_else(|| known[0].clone(), str::to_string);
        let mut priority = vec![current.clone()];
        priority.extend(known.iter().filter(|k| **k != current).cloned());
        Self {
            format,
            next_url: server,
            known,
            priority,
            current,
            penalties: Vec::new(),
            reload_at: Some(0.0),
        }
    }

    pub fn current(&self) -> &str {
        &self.current
    }

    pub fn known(&self) -> &[String] {
        &self.known
    }

    /// Whether a reload is due at second `now` (the viewer's wall clock).
    pub fn reload_due(&self, now: f64) -> bool {
        self.reload_at.is_some_and(|at| now >= at)
    }

    /// The URL of the next steering request, with the player's parameters:
    /// the pathway in use and the throughput estimate in bits per second,
    /// named as hls.js and dash.js name them.
    pub fn request_url(&self, throughput: Option<f64>) -> Url {
        let mut url = self.next_url.clone();
        {
            let mut query = url.query_pairs_mut();
            match self.format {
                Format::Hls => {
                    query.append_pair("_HLS_pathway", &self.current);
                    if let Some(bits) = throughput {
                        query.append_pair("_HLS_throughput", &format!("{}", bits.round() as u64));
                    }
                }
                Format::Dash => {
                    query.append_pair("_DASH_pathway", &format!("\"{}\"", self.current));
                    if let Some(bits) = throughput {
                        query.append_pair("_DASH_throughput", &format!("{}", bits.round() as u64));
                    }
                }
            }
        }
        url
    }

    /// Applies a manifest read at second `now` (the viewer's wall clock); returns the pathway
    /// to switch to, if the first usable one changed.
    pub fn apply(&mut self, manifest: SteeringManifest, now: f64) -> Option<String> {
        if let Some(reload) = manifest.reload {
            self.next_url = reload;
        }
        if self.reload_at.is_some() {
            self.reload_at = Some(now + manifest.ttl.as_secs_f64());
        }
        self.priority = manifest.priority;
        self.choose(now)
    }

    /// A steering request failed (`gone`: with 410) at `now`; `wait` is a
    /// 429's `Retry-After`, if it had one.
    pub fn reload_failed(&mut self, now: f64, gone: bool, wait: Option<Duration>) {
        if gone {
            self.reload_at = None;
            return;
        }
        let wait = wait.map_or(RETRY_AFTER_FAILURE, |wait| wait.min(MAX_RETRY_AFTER));
        if self.reload_at.is_some() {
            self.reload_at = Some(now + wait.as_secs_f64());
        }
    }

    fn penalised(&self, pathway: &str, now: f64) -> bool {
        self.penalties
            .iter()
            .any(|(id, until)| id == pathway && *until > now)
    }

    /// The first pathway in priority that the presentation carries and
    /// that is not penalised, if it differs from the current one (which it
    /// becomes).
    fn choose(&mut self, now: f64) -> Option<String> {
        self.penalties.retain(|(_, until)| *until > now);
        let best = self
            .priority
            .iter()
            .find(|id| self.known.contains(id) && !self.penalised(id, now))?
            .clone();
        if best == self.current {
            return None;
        }
        self.current = best.clone();
        Some(best)
    }

    /// The current pathway failed at `now`: it goes into the penalty box
    /// and the next usable pathway in priority is returned (and becomes
    /// current); `None` when no other pathway is usable.
    pub fn fail_current(&mut self, now: f64) -> Option<String> {
        if self.known.len() < 2 {
            return None;
        }
        let failed = self.current.clone();
        self.penalties.retain(|(id, _)| *id != failed);
        self.penalties.push((failed, now + PENALTY.as_secs_f64()));
        // Pathways the priority leaves out are still better than none.
        let fallback: Vec<String> = self
            .known
            .iter()
            .filter(|id| !self.priority.contains(id))
            .cloned()
            .collect();
        let next = self
            .priority
            .iter()
            .chain(fallback.iter())
            .find(|id| self.known.contains(id) && !self.penalised(id, now))?
            .clone();
        self.current = next.clone();
        Some(next)
    }

    /// Whether another pathway than the current one could serve at `now`.
    pub fn can_fail_over(&self, now: f64) -> bool {
        self.known
            .iter()
            .any(|id| *id != self.current && !self.penalised(id, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn state() -> SteeringState {
        SteeringState::new(
            Format::Hls,
            url("http://127.0.0.2:8080/steer/clip?session=s1"),
            vec!["a".into(), "b".into(), "c".into()],
            Some("b"),
        )
    }

    #[test]
    fn reads_a_manifest_and_resolves_its_reload_uri() {
        let body = br#"{"VERSION":1,"TTL":15,"RELOAD-URI":"/steer/clip?session=s2","PATHWAY-PRIORITY":["b","a"]}"#;
        let manifest =
            parse_manifest(body, &url("http://127.0.0.3:8080/steer/clip?session=s1")).unwrap();
        assert_eq!(manifest.ttl, Duration::from_secs(15));
        assert_eq!(
            manifest.reload.unwrap().as_str(),
            "http://127.0.0.3:8080/steer/clip?session=s2"
        );
        assert_eq!(manifest.priority, ["b", "a"]);
        // DASH's name for the list, and the TTL clamped both ways.
        let dash = br#"{"VERSION":1,"TTL":0,"SERVICE-LOCATION-PRIORITY":["x"]}"#;
        assert_eq!(
            parse_manifest(dash, &url("http://h/")).unwrap().ttl,
            MIN_TTL
        );
        let long = br#"{"VERSION":1,"TTL":1e300,"PATHWAY-PRIORITY":["x"]}"#;
        assert_eq!(
            parse_manifest(long, &url("http://h/")).unwrap().ttl,
            MAX_TTL
        );
        let none = br#"{"VERSION":1,"PATHWAY-PRIORITY":["x"]}"#;
        assert_eq!(
            parse_manifest(none, &url("http://h/")).unwrap().ttl,
            DEFAULT_TTL
        );
    }

    #[test]
    fn malformed_manifests_are_refused_with_a_reason() {
        let many = format!(
            r#"{{"VERSION":1,"PATHWAY-PRIORITY":[{}]}}"#,
            vec!["\"p\""; MAX_PATHWAYS + 1].join(",")
        );
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        for (body, expected) in [
            (&b"not json"[..], "JSON"),
            (br#"{"VERSION":2,"PATHWAY-PRIORITY":["a"]}"#, "VERSION"),
            (br#"{"VERSION":1}"#, "PATHWAY-PRIORITY"),
            (br#"{"VERSION":1,"PATHWAY-PRIORITY":[]}"#, "1 to"),
            (many.as_bytes(), "1 to"),
            (
                br#"{"VERSION":1,"PATHWAY-PRIORITY":["a b"]}"#,
                "invalid pathway",
            ),
            (br#"{"VERSION":1,"TTL":-1,"PATHWAY-PRIORITY":["a"]}"#, "TTL"),
            (
                br#"{"VERSION":1,"TTL":"x","PATHWAY-PRIORITY":["a"]}"#,
                "JSON",
            ),
            (&huge[..], "larger"),
        ] {
            let error = parse_manifest(body, &url("http://h/")).unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn request_urls_carry_the_players_parameters() {
        let state = state();
        assert_eq!(
            state.request_url(Some(2_500_000.4)).as_str(),
            "http://127.0.0.2:8080/steer/clip?session=s1&_HLS_pathway=b&_HLS_throughput=2500000"
        );
        let dash = SteeringState::new(
            Format::Dash,
            url("http://127.0.0.2:8080/steer/clip?proto=dash"),
            vec!["a".into()],
            None,
        );
        assert_eq!(
            dash.request_url(None).as_str(),
            "http://127.0.0.2:8080/steer/clip?proto=dash&_DASH_pathway=%22a%22"
        );
    }

    #[test]
    fn a_new_priority_switches_and_reloads_follow_the_ttl() {
        let mut state = state();
        assert_eq!(state.current(), "b");
        assert!(state.reload_due(0.0));
        let manifest = |priority: &[&str]| SteeringManifest {
            ttl: Duration::from_secs(10),
            reload: Some(url("http://127.0.0.3:8080/steer/clip?session=s9")),
            priority: priority.iter().map(|p| p.to_string()).collect(),
        };
        // Unknown pathways are passed over; "b" stays first usable.
        assert_eq!(state.apply(manifest(&["zz", "b", "a"]), 1.0), None);
        assert!(!state.reload_due(10.9) && state.reload_due(11.0));
        assert!(
            state
                .request_url(None)
                .as_str()
                .starts_with("http://127.0.0.3:8080/steer/clip?session=s9&")
        );
        assert_eq!(
            state.apply(manifest(&["a", "b"]), 11.0).as_deref(),
            Some("a")
        );
        assert_eq!(state.current(), "a");
        // A 429 waits its Retry-After; a 410 stops reloads for good.
        state.reload_failed(21.0, false, Some(Duration::from_secs(40)));
        assert!(!state.reload_due(60.9) && state.reload_due(61.0));
        state.reload_failed(61.0, true, None);
        assert!(!state.reload_due(1e9));
    }

    #[test]
    fn a_failed_pathway_is_penalised_and_the_next_in_priority_serves() {
        let mut state = state();
        let manifest = SteeringManifest {
            ttl: Duration::from_secs(10),
            reload: None,
            priority: vec!["b".into(), "c".into(), "a".into()],
        };
        state.apply(manifest.clone(), 0.0);
        assert_eq!(state.fail_current(5.0).as_deref(), Some("c"));
        // The penalised "b" is not chosen again while in the box, even when
        // the steering server still ranks it first.
        assert_eq!(state.apply(manifest.clone(), 15.0), None);
        assert_eq!(state.current(), "c");
        assert_eq!(state.fail_current(16.0).as_deref(), Some("a"));
        assert!(!state.can_fail_over(17.0));
        assert_eq!(state.fail_current(17.0), None);
        // Out of the box, the first in priority serves again.
        let after = 5.0 + PENALTY.as_secs_f64();
        assert_eq!(state.apply(manifest, after).as_deref(), Some("b"));
    }
}
