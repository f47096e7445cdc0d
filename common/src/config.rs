//! Loading TOML config files into serde structs while reporting *every* bad key in one pass.
//!
//! Config structs are plain serde types with `#[serde(deny_unknown_fields, default)]`. Serde stops
//! at the first problem, which makes an operator fix a file one key at a time; instead we
//! deserialize, and on an error note the key's dotted path, remove that key from the parsed table
//! and try again. Every unknown key and every ill-typed value is therefore named, then
//! [`Validate`] adds the semantic checks (ranges, combinations) of the well-typed result.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// One bad key: its dotted path in the file (`workers.threads`, `origins[1].address`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key, or `(file)` for problems with the whole file.
    pub key: String,
    /// What is wrong with it, in words an operator can act on.
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// Where the config came from (a file path, or `<string>`), for the message.
    pub source: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// True when some error names `key` exactly.
    pub fn names(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} problem(s)", self.source, self.errors.len())?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Semantic checks run after the file deserialized; push one error per bad key.
pub trait Validate {
    fn validate(&self, errors: &mut Vec<ConfigError>);
}

/// Reads and loads a config file; see [`from_str`].
pub fn load_file<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigErrors> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source: source.clone(),
        errors: vec![ConfigError::new("(file)", format!("cannot read: {e}"))],
    })?;
    from_str_named(&text, &source)
}

/// Parses TOML text into `T`, reporting every unknown key, ill-typed value and failed validation.
pub fn from_str<T: DeserializeOwned + Validate>(text: &str) -> Result<T, ConfigErrors> {
    from_str_named(text, "<string>")
}

/// A file never has more bad keys than this; the bound only stops a pathological loop.
const MAX_REPORTED: usize = 256;

fn from_str_named<T: DeserializeOwned + Validate>(
    text: &str,
    source: &str,
) -> Result<T, ConfigErrors> {
    let fail = |errors| {
        Err(ConfigErrors {
            source: source.to_owned(),
            errors,
        })
    };
    let mut table: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return fail(vec![ConfigError::new("(syntax)", e.to_string().trim_end())]),
    };
    let mut errors = Vec::new();
    while errors.len() < MAX_REPORTED {
        match serde_path_to_error::deserialize::<_, T>(table.clone()) {
            Ok(config) => {
                // Keys removed above fell back to their (valid) defaults, so validation still
                // finds every semantic problem among the rest; skip keys already reported.
                let mut semantic = Vec::new();
                config.validate(&mut semantic);
                semantic.retain(|v| !errors.iter().any(|e: &ConfigError| e.key == v.key));
                errors.extend(semantic);
                return if errors.is_empty() {
                    Ok(config)
                } else {
                    fail(errors)
                };
            }
            Err(e) => {
                let path = e.path().to_string();
                let problem = clean_message(&e.into_inner().to_string());
                let removed = remove_path_or_ancestor(&mut table, &path);
                let key = if path == "." {
                    "(file)".to_owned()
                } else {
                    path
                };
                errors.push(ConfigError::new(key, problem));
                if !removed {
                    // A root-level problem: nothing left to retry.
                    return fail(errors);
                }
            }
        }
    }
    fail(errors)
}

/// toml's messages end with "in `key`" and blank lines; we print the key ourselves.
fn clean_message(message: &str) -> String {
    message
        .split("\nin `")
        .next()
        .unwrap_or(message)
        .trim()
        .to_owned()
}

/// Removes the value at a serde_path_to_error path (`a.b`, `a[2].c`) so the next attempt gets
/// past it. A path that cannot be removed (a required key is missing inside it) takes its
/// nearest removable ancestor with it, so the rest of the file is still checked. False only when
/// nothing but the root is left.
fn remove_path_or_ancestor(table: &mut Table, path: &str) -> bool {
    let mut segments = split_path(path);
    while !segments.is_empty() {
        if remove_path(table, &segments) {
            return true;
        }
        segments.pop();
    }
    false
}

fn remove_path(table: &mut Table, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cursor = Cursor::Table(table);
    for seg in parents {
        cursor = match cursor.child(seg) {
            Some(c) => c,
            None => return false,
        };
    }
    cursor.remove(last)
}

enum Segment {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment> {
    if path == "." || path.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key.to_owned()));
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            if let Ok(n) = idx.trim_end_matches(']').parse() {
                out.push(Segment::Index(n));
            }
        }
    }
    out
}

enum Cursor<'a> {
    Table(&'a mut Table),
    Array(&'a mut Vec<Value>),
}

impl<'a> Cursor<'a> {
    fn child(self, seg: &Segment) -> Option<Cursor<'a>> {
        let value = match (self, seg) {
            (Cursor::Table(t), Segment::Key(k)) => t.get_mut(k)?,
            (Cursor::Array(a), Segment::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
        match value {
            Value::Table(t) => Some(Cursor::Table(t)),
            Value::Array(a) => Some(Cursor::Array(a)),
            _ => None,
        }
    }

    fn remove(self, seg: &Segment) -> bool {
        match (self, seg) {
            (Cursor::Table(t), Segment::Key(k)) => t.remove(k).is_some(),
            // Removing an element would shift the indices of later errors; blank it instead so
            // its own fields fall back to defaults or get reported as missing.
            (Cursor::Array(a), Segment::Index(i)) => match a.get_mut(*i) {
                Some(Value::Table(t)) if t.is_empty() => false,
                Some(v) => {
                    *v = Value::Table(Table::new());
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Conf {
        listen: String,
        threads: u16,
        limits: Limits,
        backends: Vec<Backend>,
    }

    impl Default for Conf {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:1".into(),
                threads: 2,
                limits: Limits::default(),
                backends: Vec::new(),
            }
        }
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Limits {
        max_bytes: u64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Backend {
        address: String,
        #[serde(default)]
        weight: u32,
    }

    impl Validate for Conf {
        fn validate(&self, errors: &mut Vec<ConfigError>) {
            if self.threads == 0 {
                errors.push(ConfigError::new("threads", "must be at least 1"));
            }
        }
    }

    #[test]
    fn good_file_loads() {
        let c: Conf = from_str(
            "listen = \"0.0.0.0:80\"\nthreads = 4\n[limits]\nmax_bytes = 9\n\
             [[backends]]\naddress = \"a\"\n",
        )
        .expect("valid config");
        assert_eq!(c.threads, 4);
        assert_eq!(c.limits.max_bytes, 9);
        assert_eq!(c.backends[0].address, "a");
    }

    #[test]
    fn every_bad_key_is_named_in_one_pass() {
        let err = from_str::<Conf>(
            "listen = 5\nthreeds = 4\n[limits]\nmax_bytes = \"big\"\nextra = 1\n\
             [[backends]]\naddress = \"a\"\nweight = -1\n[[backends]]\nadress = \"b\"\n",
        )
        .expect_err("four bad keys");
        let keys: Vec<_> = err.errors.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "listen",
            "threeds",
            "limits.max_bytes",
            "limits.extra",
            "backends[0].weight",
        ] {
            assert!(err.names(k), "{k} missing from {keys:?}");
        }
        assert!(err.names("backends[1].adress"), "{keys:?}");
        assert!(err.to_string().contains("threeds"), "{err}");
        assert!(
            err.errors.iter().all(|e| !e.problem.contains('\n')),
            "{err}"
        );
    }

    #[test]
    fn validation_runs_on_well_typed_files() {
        let err = from_str::<Conf>("threads = 0").expect_err("zero threads");
        assert_eq!(
            err.errors,
            vec![ConfigError::new("threads", "must be at least 1")]
        );
    }

    #[test]
    fn type_and_semantic_errors_are_reported_together() {
        let err = from_str::<Conf>("threads = 0\nlisten = 5").expect_err("two problems");
        assert!(err.names("threads") && err.names("listen"), "{err}");
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let err = from_str::<Conf>("listen = \n").expect_err("syntax");
        assert_eq!(err.errors[0].key, "(syntax)");
        assert!(err.errors[0].problem.contains("line 1"), "{err}");
    }
}
