//! The MPD rewritten for DASH-IF content steering (DASH-IF CTS 001;
//! ISO/IEC 23009-1 `ContentSteering`, `BaseURL@serviceLocation`).
//!
//! The stored MPD resolves its relative URLs against one MPD-level
//! `<BaseURL>` (`g{N}/`, the generation's directory), or against the MPD's
//! own URL when it has none. The rewritten MPD puts there, in place:
//!
//! ```xml
//! <ContentSteering defaultServiceLocation="{first}" queryBeforeStart="true">{steering URL}</ContentSteering>
//! <BaseURL serviceLocation="{pathway}">{node}{prefix}g{N}/</BaseURL>   (one per pathway)
//! ```
//!
//! so every `SegmentTemplate` and deeper `BaseURL` resolves on the pathway
//! the player picks, under the request's path prefix (a signed URL's
//! `/s/{token}` included). `queryBeforeStart` makes dash.js ask the
//! steering server before its first segment.
//!
//! The MPD is parsed with `roxmltree` (no DTD, bounded size); the new
//! elements are inserted as text at the byte positions the parser reports,
//! every other byte kept as stored.

use crate::{Rewrite, SteeringError};

/// Largest stored MPD rewritten.
pub const MAX_MPD_LEN: usize = 4 << 20;

/// `text` escaped for an XML text node or attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The stored MPD `stored` rewritten for `rewrite`.
pub fn rewrite_mpd(stored: &str, rewrite: &Rewrite<'_>) -> Result<String, SteeringError> {
    rewrite.check()?;
    if stored.len() > MAX_MPD_LEN {
        return Err(SteeringError::Rewrite(format!(
            "the MPD is larger than {MAX_MPD_LEN} bytes"
        )));
    }
    let document = roxmltree::Document::parse(stored)
        .map_err(|error| SteeringError::Rewrite(format!("the MPD is not XML: {error}")))?;
    let mpd = document.root_element();
    if mpd.tag_name().name() != "MPD" {
        return Err(SteeringError::Rewrite("the root element is not MPD".into()));
    }
    let children: Vec<roxmltree::Node<'_, '_>> =
        mpd.children().filter(|n| n.is_element()).collect();
    if children
        .iter()
        .any(|n| n.tag_name().name() == "ContentSteering")
    {
        return Err(SteeringError::Rewrite(
            "the stored MPD already has a ContentSteering element".into(),
        ));
    }
    let base_urls: Vec<_> = children
        .iter()
        .filter(|n| n.tag_name().name() == "BaseURL")
        .collect();
    // The span to replace, and the relative directory the pathways' BaseURLs end in.
    let (start, end, relative) = match base_urls.as_slice() {
        [] => {
            let period = children
                .iter()
                .find(|n| n.tag_name().name() == "Period")
                .ok_or_else(|| SteeringError::Rewrite("the MPD has no Period".into()))?;
            (period.range().start, period.range().start, String::new())
        }
        [base] => {
            if base.attributes().next().is_some() {
                return Err(SteeringError::Rewrite(
                    "the stored MPD-level BaseURL has attributes".into(),
                ));
            }
            let text = base.text().unwrap_or("").trim();
            (base.range().start, base.range().end, text.to_owned())
        }
        _ => {
            return Err(SteeringError::Rewrite(
                "the stored MPD has more than one MPD-level BaseURL".into(),
            ));
        }
    };
    // The indentation of the line the span starts on, for the new lines.
    let line_start = stored[..start].rfind('\n').map_or(0, |n| n + 1);
    let indent = &stored[line_start..start];
    let indent = if indent.bytes().all(|b| b == b' ' || b == b'\t') {
        indent
    } else {
        ""
    };
    let mut inserted = format!(
        "<ContentSteering defaultServiceLocation=\"{}\" queryBeforeStart=\"true\">{}</ContentSteering>",
        rewrite.pathways[0].id,
        escape(rewrite.server_uri)
    );
    for pathway in rewrite.pathways {
        let url = if relative.is_empty() {
            pathway.base_url.join(rewrite.prefix.as_str())
        } else {
            rewrite.absolute(pathway, &relative)?
        };
        inserted.push_str(&format!(
            "\n{indent}<BaseURL serviceLocation=\"{}\">{}</BaseURL>",
            pathway.id,
            escape(&url)
        ));
    }
    if base_urls.is_empty() {
        // Before a Period: the Period keeps its own line.
        inserted.push_str(&format!("\n{indent}"));
    }
    Ok(format!("{}{inserted}{}", &stored[..start], &stored[end..]))
}

#[cfg(test)]
#[path = "dash_tests.rs"]
mod tests;
