//! ISO 8601 durations (`xs:duration`, such as `PT1M3.5S`) in seconds, as
//! dash.js reads `mediaPresentationDuration` and `Period@start`/`@duration`.

/// What dash.js counts for a year and a month of an ISO 8601 duration,
/// which have no fixed length.
pub(super) const SECONDS_IN_YEAR: f64 = 365.0 * 24.0 * 3600.0;
pub(super) const SECONDS_IN_MONTH: f64 = 30.0 * 24.0 * 3600.0;

/// An `xs:duration` (ISO 8601) in seconds: `PT1M3.5S` is 63.5, `P1DT2H`
/// 93,600. Years and months count as dash.js counts them (365 and 30 days).
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let bad = |why: &str| format!("{text:?} is not an ISO 8601 duration like PT1M3.5S: {why}");
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(bad("it is negative"));
    }
    let rest = trimmed
        .strip_prefix('P')
        .ok_or_else(|| bad("it does not start with P"))?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut components = 0;
    let mut seconds = duration_components(
        date,
        &[
            ('Y', SECONDS_IN_YEAR),
            ('M', SECONDS_IN_MONTH),
            ('D', 86_400.0),
        ],
        &mut components,
    )
    .map_err(|why| bad(&why))?;
    if let Some(time) = time {
        if time.is_empty() {
            return Err(bad("T is not followed by hours, minutes or seconds"));
        }
        seconds += duration_components(
            time,
            &[('H', 3600.0), ('M', 60.0), ('S', 1.0)],
            &mut components,
        )
        .map_err(|why| bad(&why))?;
    }
    if components == 0 {
        return Err(bad("it has no component"));
    }
    if !seconds.is_finite() {
        return Err(bad("it is too long"));
    }
    Ok(seconds)
}

/// `1Y2M3D` or `4H5M6.5S`: numbers with designators, in `units`' order.
fn duration_components(
    text: &str,
    units: &[(char, f64)],
    components: &mut u32,
) -> Result<f64, String> {
    let mut seconds = 0.0;
    let mut rest = text;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{rest:?} has no designator"))?;
        let (number, after) = rest.split_at(end);
        let designator = after.chars().next().unwrap_or_default();
        let unit = units[next_unit..]
            .iter()
            .position(|(unit, _)| *unit == designator)
            .ok_or_else(|| format!("designator {designator:?} is unknown or out of order"))?;
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{number:?} before {designator:?} is not a number"))?;
        seconds += value * units[next_unit + unit].1;
        next_unit += unit + 1;
        *components += 1;
        rest = &after[designator.len_utf8()..];
    }
    Ok(seconds)
}
