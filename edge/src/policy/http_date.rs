//! HTTP-date as a recipient reads it (RFC 9110 §5.6.7): all three formats (IMF-fixdate,
//! RFC 850, asctime), and names of days, months and the zone in any letter case, as the
//! robustness rule asks of recipients. A value that still does not parse is no date at all;
//! each caller says what that means (`Expires` → already expired, `If-Modified-Since` → ignored).

use std::time::SystemTime;

use http::HeaderMap;

const NAMES: [&str; 27] = [
    "Mon",
    "Tue",
    "Wed",
    "Thu",
    "Fri",
    "Sat",
    "Sun",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
    "GMT",
];

/// Parses one HTTP-date; `None` when it is not one in any format.
pub fn parse(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(t) = httpdate::parse_http_date(value) {
        return Some(t);
    }
    // Only the letters can be in the wrong case; the formats are otherwise fixed.
    if !value.is_ascii() || !value.bytes().any(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut canonical = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic()) {
        canonical.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let word = &rest[..end];
        canonical.push_str(
            NAMES
                .iter()
                .find(|n| n.eq_ignore_ascii_case(word))
                .copied()
                .unwrap_or(word),
        );
        rest = &rest[end..];
    }
    canonical.push_str(rest);
    httpdate::parse_http_date(&canonical).ok()
}

/// The date in header `name`, if there is exactly one readable value.
pub fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<SystemTime> {
    parse(headers.get(name)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn all_three_formats_in_any_case() {
        // RFC 9110 §5.6.7's example instant.
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for v in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "sunday, 06-NOV-94 08:49:37 Gmt",
            "SUN NOV  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse(v), Some(t), "{v}");
        }
    }

    #[test]
    fn what_is_not_a_date() {
        for v in [
            "0",
            "-1",
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sonntag, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(v), None, "{v}");
        }
    }
}
