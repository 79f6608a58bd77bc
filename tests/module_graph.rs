//! The top-level modules of src/ form a graph without cycles: no module imports one that
//! imports it back, so the path of an activation reads top to bottom (docs/ARCHITECTURE.md).
//!
//! Reads the sources as text: every `crate::X` path (and each name of a `crate::{X, Y}` group)
//! in a module's files is an edge to `X`. Comments are skipped: a doc link is not a dependency.
//! On failure it prints the cycle and the files that make each of its edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module -> (module it uses -> files that use it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>;

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 5, "found too few modules under {}: {:?}", src.display(), graph.keys());
    if let Some(cycle) = find_cycle(&graph) {
        let mut report = format!("module cycle: {}\n", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            let files = &graph[&pair[0]][&pair[1]];
            let files: Vec<_> = files
                .iter()
                .map(|f| f.strip_prefix(&src).unwrap_or(f).display().to_string())
                .collect();
            report.push_str(&format!("  {} -> {}: {}\n", pair[0], pair[1], files.join(", ")));
        }
        panic!("{report}");
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut g = Graph::new();
    for (from, to) in [("api", "controller"), ("controller", "bus"), ("bus", "api")] {
        g.entry(from.into()).or_default().entry(to.into()).or_default();
    }
    g.entry("model".into()).or_default();
    assert_eq!(
        find_cycle(&g),
        Some(vec!["api".into(), "controller".into(), "bus".into(), "api".into()])
    );
    if let Some(edges) = g.get_mut("bus") {
        edges.remove("api");
    }
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn uses_are_read_from_paths_groups_and_not_comments() {
    let text = "use crate::bus::frame;\n\
                use crate::{model::{Kind, Limits}, store};\n\
                use crate::{\n    invoker::Invoker,\n    shutdown,\n};\n\
                /// See [`crate::daemon`].\n\
                let x = crate::metrics::record(); // crate::api\n\
                let y = other_crate::cli::run();\n";
    let found: BTreeSet<String> = uses(text).into_iter().collect();
    let want: BTreeSet<String> = ["bus", "model", "store", "invoker", "shutdown", "metrics"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
}

/// The graph of the top-level modules under `src`: each directory and each `*.rs` file beside
/// lib.rs (binaries under src/bin are not modules of the library).
fn graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let entries = std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let name = match path.file_stem().and_then(|n| n.to_str()) {
            Some(n) => n.to_owned(),
            None => continue,
        };
        let is_module = if path.is_dir() {
            name != "bin"
        } else {
            path.extension().is_some_and(|e| e == "rs") && name != "lib"
        };
        if !is_module {
            continue;
        }
        let edges = graph.entry(name.clone()).or_default();
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for used in uses(&text) {
                if used != name {
                    edges.entry(used).or_default().insert(file.clone());
                }
            }
        }
    }
    // Only edges between modules: `crate::SomeReexport` names no module.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|to, _| modules.contains(to));
    }
    graph
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The first segment of every `crate::` path in `text`, outside `//` comments; for a group
/// `crate::{a::b, c::{d, e}}` (on one line or several), each member's first segment.
fn uses(text: &str) -> Vec<String> {
    let code: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect();
    let code = code.join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `other_crate::`, not a path into this crate
        }
        let Some(group) = rest.strip_prefix('{') else {
            found.extend(ident(rest));
            continue;
        };
        // Members start after the `{` and after each comma at depth 1.
        let mut depth = 1;
        let mut member_start = Some(0);
        for (i, c) in group.char_indices() {
            if let Some(start) = member_start.take() {
                found.extend(ident(group[start..].trim_start()));
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => break,
                '}' => depth -= 1,
                ',' if depth == 1 => member_start = Some(i + 1),
                _ => {}
            }
        }
    }
    found
}

fn ident(s: &str) -> Option<String> {
    let id: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!id.is_empty() && id != "self").then_some(id)
}

/// A cycle in `graph` as its modules in order, the first repeated at the end; None when the
/// graph is acyclic. Depth-first, in name order, so the answer is the same on every run.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(node, graph, &mut marks, &mut stack) {
            return Some(cycle);
        }
    }
    None
}
