//! The purge request body (`POST /purge` on the edge's admin API): what the origin sends after
//! a write and what one edge region forwards to another, one type for both sides.

use serde::{Deserialize, Serialize};

/// A purge request. `id` and `forwarded_from` are set only when one region forwards a purge to
/// another. Empty lists and `false` flags are left out when sent (`{"tags": ["front"]}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub soft: bool,
    /// For the caller only: answer once every node applied it. Never forwarded.
    #[serde(default, skip_serializing)]
    pub wait: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// The fields a purge request may carry, for the API description check.
pub const REQUEST_FIELDS: [&str; 8] = [
    "urls",
    "prefixes",
    "tags",
    "all",
    "soft",
    "wait",
    "id",
    "forwarded_from",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_purge_is_just_its_tags_on_the_wire() {
        let req = PurgeRequest {
            tags: vec!["front".to_owned()],
            wait: true,
            ..PurgeRequest::default()
        };
        let json = serde_json::to_string(&req).expect("serialize");
        assert_eq!(json, r#"{"tags":["front"]}"#);
        let back: PurgeRequest = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.tags, req.tags);
        assert!(serde_json::from_str::<PurgeRequest>(r#"{"tag": []}"#).is_err());
    }
}
