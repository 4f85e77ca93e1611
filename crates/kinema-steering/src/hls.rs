//! The multivariant playlist rewritten for content steering
//! (draft-pantos-hls-rfc8216bis §4.4.6.6 `EXT-X-CONTENT-STEERING`,
//! §4.4.6.2 `PATHWAY-ID` and `STABLE-VARIANT-ID`, §4.4.6.1
//! `STABLE-RENDITION-ID`).
//!
//! The stored playlist has relative URIs (`g{N}/v720/index.m3u8`). The
//! rewritten one carries `EXT-X-CONTENT-STEERING` with the steering URL and
//! the session's pathway, then one full copy of the renditions, variants
//! and I-frame variants per pathway:
//!
//! - every URI absolute on that pathway's node, under the request's path
//!   prefix, so a signed URL's `/s/{token}` stays in every path;
//! - every variant and I-frame variant with `PATHWAY-ID` and a
//!   `STABLE-VARIANT-ID` that is the same for the same rung on every
//!   pathway (players keep the rung when they change pathway);
//! - renditions (`EXT-X-MEDIA`) in groups of their own per pathway
//!   (`GROUP-ID` suffixed with the pathway id, and the variants' `AUDIO`,
//!   `VIDEO`, `SUBTITLES` and `CLOSED-CAPTIONS` references with it), so
//!   audio and subtitles change node with the video, with a
//!   `STABLE-RENDITION-ID` the same on every pathway.
//!
//! Every other line is kept as it is; lines that came after the first
//! rendition or variant follow the pathway copies. An existing
//! `EXT-X-CONTENT-STEERING` is replaced. Stable ids already present are
//! kept.

use std::collections::HashMap;

use crate::pathway::Pathway;
use crate::{Rewrite, SteeringError};

/// Largest stored playlist rewritten.
pub const MAX_PLAYLIST_LEN: usize = 1 << 20;
/// Most renditions, variants and I-frame variants in one stored playlist.
pub const MAX_ENTRIES: usize = 512;
/// Longest attribute list parsed.
const MAX_ATTRIBUTES: usize = 64;

/// An attribute list, in order, values as written (quoted ones with quotes).
#[derive(Debug, Clone, PartialEq)]
struct Attributes(Vec<(String, String)>);

impl Attributes {
    /// RFC 8216 §4.2: `NAME=VALUE` pairs separated by commas; a value is a
    /// quoted string (no quote or line break inside) or runs to the next comma.
    fn parse(text: &str) -> Result<Self, SteeringError> {
        let bad = || SteeringError::Rewrite(format!("malformed attribute list {text:?}"));
        let mut pairs = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (name, after) = rest.split_once('=').ok_or_else(bad)?;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(bad());
            }
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"').ok_or_else(bad)?;
                (&after[..end + 2], &quoted[end + 1..])
            } else {
                after.split_at(after.find(',').unwrap_or(after.len()))
            };
            rest = match after.strip_prefix(',') {
                Some(next) if !next.is_empty() => next,
                Some(_) => return Err(bad()),
                None if after.is_empty() => after,
                None => return Err(bad()),
            };
            pairs.push((name.to_owned(), value.to_owned()));
            if pairs.len() > MAX_ATTRIBUTES {
                return Err(bad());
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The content of a quoted value.
    fn quoted(&self, name: &str) -> Option<&str> {
        self.get(name)?.strip_prefix('"')?.strip_suffix('"')
    }

    /// Replaces a value in place, or appends it.
    fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(pair) => pair.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    fn render(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.join(",")
    }
}

#[derive(Debug)]
enum Entry {
    /// `EXT-X-MEDIA`, and its stable rendition id.
    Media(Attributes, String),
    /// `EXT-X-STREAM-INF`, its URI line, its stable variant id.
    Variant(Attributes, String, String),
    /// `EXT-X-I-FRAME-STREAM-INF`, its stable variant id.
    IFrame(Attributes, String),
}

/// A stable id from a URI: its directory's name (`g3/v720/index.m3u8` →
/// `v720`), else its file's stem, in the characters the specification
/// allows (`[a-zA-Z0-9+/=._-]`), made unique with `.2`, `.3`, … in order of
/// appearance (so the same on every pathway).
fn stable_id(uri: Option<&str>, fallback: &str, taken: &mut HashMap<String, usize>) -> String {
    let mut segments = uri.unwrap_or("").rsplit('/');
    let file = segments.next().unwrap_or("");
    let base = match segments.next() {
        Some(directory) if !directory.is_empty() => directory,
        _ => file.split('.').next().unwrap_or(""),
    };
    let mut id: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+/=.-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        id = fallback.to_owned();
    }
    let count = taken.entry(id.clone()).or_insert(0);
    *count += 1;
    if *count > 1 {
        id = format!("{id}.{count}");
    }
    id
}

const GROUP_REFERENCES: [&str; 4] = ["AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS"];

/// `GROUP-ID="audio"` on pathway `n…` becomes `"audio-n…"`.
fn group_on(quoted_group: &str, pathway: &Pathway) -> String {
    format!("\"{quoted_group}-{}\"", pathway.id)
}

/// The stored multivariant playlist `stored` rewritten for `rewrite`.
pub fn rewrite_master(stored: &str, rewrite: &Rewrite<'_>) -> Result<String, SteeringError> {
    rewrite.check()?;
    if stored.len() > MAX_PLAYLIST_LEN {
        return Err(SteeringError::Rewrite(format!(
            "the playlist is larger than {MAX_PLAYLIST_LEN} bytes"
        )));
    }
    if !stored.starts_with("#EXTM3U") {
        return Err(SteeringError::Rewrite(
            "the playlist does not start with #EXTM3U".into(),
        ));
    }
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut entries = Vec::new();
    let mut variant_ids = HashMap::new();
    let mut rendition_ids = HashMap::new();
    let mut lines = stored.lines();
    while let Some(line) = lines.next() {
        let entry = if let Some(attributes) = line.strip_prefix("#EXT-X-MEDIA:") {
            let attributes = Attributes::parse(attributes)?;
            let fallback = format!("r{}", entries.len());
            let id = match attributes.quoted("STABLE-RENDITION-ID") {
                Some(id) => id.to_owned(),
                None => stable_id(attributes.quoted("URI"), &fallback, &mut rendition_ids),
            };
            Some(Entry::Media(attributes, id))
        } else if let Some(attributes) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let attributes = Attributes::parse(attributes)?;
            let uri = lines
                .by_ref()
                .map(str::trim)
                // Blank lines and comments may come between; a tag may not.
                .find(|l| !l.is_empty() && (!l.starts_with('#') || l.starts_with("#EXT")))
                .filter(|l| !l.starts_with('#'))
                .ok_or_else(|| {
                    SteeringError::Rewrite("an EXT-X-STREAM-INF is not followed by its URI".into())
                })?;
            let fallback = format!("v{}", entries.len());
            let id = match attributes.quoted("STABLE-VARIANT-ID") {
                Some(id) => id.to_owned(),
                None => stable_id(Some(uri), &fallback, &mut variant_ids),
            };
            Some(Entry::Variant(attributes, uri.to_owned(), id))
        } else if let Some(attributes) = line.strip_prefix("#EXT-X-I-FRAME-STREAM-INF:") {
            let attributes = Attributes::parse(attributes)?;
            let fallback = format!("v{}", entries.len());
            let id = match attributes.quoted("STABLE-VARIANT-ID") {
                Some(id) => id.to_owned(),
                None => {
                    let base = stable_id(attributes.quoted("URI"), &fallback, &mut HashMap::new());
                    stable_id(
                        Some(&format!("{base}-iframes")),
                        &fallback,
                        &mut variant_ids,
                    )
                }
            };
            Some(Entry::IFrame(attributes, id))
        } else {
            if !line.starts_with("#EXT-X-CONTENT-STEERING:") {
                if entries.is_empty() {
                    before.push(line);
                } else {
                    after.push(line);
                }
            }
            None
        };
        if let Some(entry) = entry {
            entries.push(entry);
            if entries.len() > MAX_ENTRIES {
                return Err(SteeringError::Rewrite(format!(
                    "more than {MAX_ENTRIES} renditions and variants"
                )));
            }
        }
    }
    if !entries.iter().any(|e| matches!(e, Entry::Variant(..))) {
        return Err(SteeringError::Rewrite("the playlist has no variant".into()));
    }
    let mut out = String::with_capacity(stored.len() * (rewrite.pathways.len() + 1));
    for line in before {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{}\",PATHWAY-ID=\"{}\"\n",
        rewrite.server_uri, rewrite.pathways[0].id
    ));
    for pathway in rewrite.pathways {
        let absolute_uri = |attributes: &mut Attributes| -> Result<(), SteeringError> {
            if let Some(uri) = attributes.quoted("URI") {
                let absolute = rewrite.absolute(pathway, uri)?;
                attributes.set("URI", format!("\"{absolute}\""));
            }
            Ok(())
        };
        for entry in &entries {
            if let Entry::Media(attributes, id) = entry {
                let mut attributes = attributes.clone();
                if let Some(group) = attributes.quoted("GROUP-ID") {
                    attributes.set("GROUP-ID", group_on(group, pathway));
                }
                absolute_uri(&mut attributes)?;
                attributes.set("STABLE-RENDITION-ID", format!("\"{id}\""));
                out.push_str(&format!("#EXT-X-MEDIA:{}\n", attributes.render()));
            }
        }
        for entry in &entries {
            match entry {
                Entry::Variant(attributes, uri, id) => {
                    let mut attributes = attributes.clone();
                    for reference in GROUP_REFERENCES {
                        if let Some(group) = attributes.quoted(reference) {
                            attributes.set(reference, group_on(group, pathway));
                        }
                    }
                    attributes.set("PATHWAY-ID", format!("\"{}\"", pathway.id));
                    attributes.set("STABLE-VARIANT-ID", format!("\"{id}\""));
                    out.push_str(&format!(
                        "#EXT-X-STREAM-INF:{}\n{}\n",
                        attributes.render(),
                        rewrite.absolute(pathway, uri)?
                    ));
                }
                Entry::IFrame(attributes, id) => {
                    let mut attributes = attributes.clone();
                    absolute_uri(&mut attributes)?;
                    attributes.set("PATHWAY-ID", format!("\"{}\"", pathway.id));
                    attributes.set("STABLE-VARIANT-ID", format!("\"{id}\""));
                    out.push_str(&format!(
                        "#EXT-X-I-FRAME-STREAM-INF:{}\n",
                        attributes.render()
                    ));
                }
                Entry::Media(..) => {}
            }
        }
    }
    for line in after {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
#[path = "hls_tests.rs"]
mod tests;
