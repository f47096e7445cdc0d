//! Dependencies between the edge's modules run one way (docs/architecture.md): storage knows
//! nothing of the proxy or purges, purge knows storage but not the proxy, nothing below the proxy
//! reaches up into it. This reads the sources (not test code) for `crate::<module>` paths and
//! fails on any cycle between top-level modules, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files that are test code as a whole (the `#[cfg(test)] mod …;` declarations).
const TEST_FILES: [&str; 2] = ["l2_tests.rs", "fake.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`storage/l2.rs` → `storage`), `None` for the crate
/// root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The module's code without its unit tests (by convention the last item: `mod tests`).
fn code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |end| &text[..end])
}

/// Every `crate::<name>` a piece of code names.
fn uses(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter_map(|(at, _)| {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if TEST_FILES.contains(&name) {
            continue;
        }
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source");
        let deps = graph.entry(module.clone()).or_default();
        for dep in uses(code(&text)) {
            if dep != module {
                deps.insert(dep);
            }
        }
    }
    graph
}

/// A cycle through `from`, as the path of modules, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(from.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn module_dependencies_have_no_cycles() {
    let graph = graph();
    assert!(
        graph.contains_key("storage") && graph.contains_key("proxy"),
        "{graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle(&graph, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn storage_knows_nothing_of_the_proxy_or_purges() {
    let graph = graph();
    for low in [
        "storage", "policy", "target", "headers", "metrics", "config",
    ] {
        let deps = graph.get(low).cloned().unwrap_or_default();
        for high in ["proxy", "purge", "admin", "connection", "ctx"] {
            assert!(!deps.contains(high), "{low} depends on {high}: {deps:?}");
        }
    }
}
