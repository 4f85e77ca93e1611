//! The XML-reading helpers every part of the MPD reader shares: the two
//! kinds of error (malformed, unsupported) with where in the document they
//! arose, child-element and attribute readers, the refusal of remote
//! (`xlink:href`) elements, `BaseURL` resolution one level down, and byte
//! ranges. No DASH decision is taken here.

use roxmltree::Node;
use url::Url;

use crate::BenchError;
use crate::hls::ByteRange;

use super::duration::parse_duration;

pub(super) const XLINK_NAMESPACE: &str = "http://www.w3.org/1999/xlink";

pub(super) fn malformed(detail: impl Into<String>) -> BenchError {
    BenchError::Mpd(detail.into())
}

pub(super) fn unsupported(detail: impl Into<String>) -> BenchError {
    BenchError::MpdUnsupported(detail.into())
}

/// Where an element is, for messages: `line 7: Representation "v360"`.
pub(super) fn at(node: Node) -> String {
    let line = node.document().text_pos_at(node.range().start).row;
    let name = node.tag_name().name();
    match node.attribute("id") {
        Some(id) => format!("line {line}: {name} {id:?}"),
        None => format!("line {line}: {name}"),
    }
}

/// Child elements called `name` (any namespace: MPDs are written both with
/// and without the DASH namespace).
pub(super) fn elements<'a, 'input>(
    node: Node<'a, 'input>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children()
        .filter(move |child| child.is_element() && child.tag_name().name() == name)
}

pub(super) fn attribute_u64(node: Node, name: &str) -> Result<Option<u64>, BenchError> {
    node.attribute(name)
        .map(|value| {
            value.trim().parse::<u64>().map_err(|_| {
                malformed(format!(
                    "{}: {name}={value:?} is not a whole number",
                    at(node)
                ))
            })
        })
        .transpose()
}

pub(super) fn attribute_duration(node: Node, name: &str) -> Result<Option<f64>, BenchError> {
    node.attribute(name)
        .map(|value| {
            parse_duration(value)
                .map_err(|detail| malformed(format!("{}: {name}: {detail}", at(node))))
        })
        .transpose()
}

pub(super) fn refuse_remote(node: Node) -> Result<(), BenchError> {
    if node.attribute((XLINK_NAMESPACE, "href")).is_some() {
        return Err(unsupported(format!(
            "{}: remote elements (xlink:href) are not supported; inline them in the MPD",
            at(node)
        )));
    }
    Ok(())
}

/// Resolves the first `BaseURL` child of `element` against `parent`.
pub(super) fn base_url(parent: &Url, element: Node) -> Result<Url, BenchError> {
    let Some(node) = elements(element, "BaseURL").next() else {
        return Ok(parent.clone());
    };
    let reference = node.text().unwrap_or_default().trim();
    parent.join(reference).map_err(|error| {
        malformed(format!(
            "{}: BaseURL {reference:?} is not a valid reference from {parent}: {error}",
            at(node)
        ))
    })
}

/// `a-b` (inclusive, as HTTP) → a byte range.
pub(super) fn parse_range(node: Node, text: &str) -> Result<ByteRange, BenchError> {
    let bad = || malformed(format!("{}: range {text:?} is not FIRST-LAST", at(node)));
    let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(ByteRange {
        offset: first,
        length: last - first + 1,
    })
}
