//! Which AdaptationSet a viewer plays, as dash.js chooses with its
//! defaults: what a set carries (video, audio, other) and the choice among
//! sets of one kind by `selectionPriority`, top bandwidth and size. It reads
//! attributes only; the Representations of the chosen set are read in
//! `representation.rs`.

use roxmltree::Node;

use super::xml::{at, attribute_u64, elements, malformed};
use crate::BenchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Video,
    Audio,
    Other,
}

/// What an AdaptationSet carries: `contentType`, else the MIME type of the
/// set or of its first Representation, else `ContentComponent`, else the
/// codec's four-character code.
pub(super) fn kind_of(set: Node) -> Kind {
    let from_word = |word: &str| match word {
        "video" => Kind::Video,
        "audio" => Kind::Audio,
        _ => Kind::Other,
    };
    if let Some(content_type) = set.attribute("contentType") {
        return from_word(content_type);
    }
    let first = elements(set, "Representation").next();
    let inherited = |name: &str| {
        set.attribute(name)
            .or_else(|| first.and_then(|r| r.attribute(name)))
    };
    if let Some(mime) = inherited("mimeType") {
        return from_word(mime.split('/').next().unwrap_or_default());
    }
    if let Some(component) =
        elements(set, "ContentComponent").find_map(|component| component.attribute("contentType"))
    {
        return from_word(component);
    }
    let codec = inherited("codecs").unwrap_or_default();
    let fourcc = codec.split('.').next().unwrap_or_default();
    match fourcc {
        "avc1" | "avc3" | "hvc1" | "hev1" | "dvh1" | "dvhe" | "vp08" | "vp09" | "av01" => {
            Kind::Video
        }
        "mp4a" | "ac-3" | "ec-3" | "ac-4" | "opus" | "Opus" | "flac" | "fLaC" => Kind::Audio,
        _ => Kind::Other,
    }
}

pub(super) fn bandwidth_of(representation: Node) -> Result<u64, BenchError> {
    attribute_u64(representation, "bandwidth")?.ok_or_else(|| {
        malformed(format!(
            "{}: has no bandwidth attribute (ISO/IEC 23009-1 requires one)",
            at(representation)
        ))
    })
}

/// dash.js's default choice among sets of one kind: highest
/// `selectionPriority` (default 1), then highest top bandwidth, then most
/// Representations, then the first.
pub(super) fn choose_set<'a, 'input>(
    sets: &[Node<'a, 'input>],
) -> Result<Option<Node<'a, 'input>>, BenchError> {
    let mut best: Option<((u64, u64, usize), Node)> = None;
    for set in sets {
        let priority = attribute_u64(*set, "selectionPriority")?.unwrap_or(1);
        let mut top = 0;
        let mut count = 0;
        for representation in elements(*set, "Representation") {
            top = top.max(bandwidth_of(representation)?);
            count += 1;
        }
        if count == 0 {
            continue;
        }
        let key = (priority, top, count);
        if best.as_ref().is_none_or(|(best_key, _)| key > *best_key) {
            best = Some((key, *set));
        }
    }
    Ok(best.map(|(_, set)| set))
}
