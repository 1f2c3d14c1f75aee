//! The crate's modules import each other without a cycle (docs/design.md,
//! "Rust modules"): each file of `src/` is a node, each `crate::` or
//! `super::` path in its code an edge to the file of the module it names.
//! A cycle (a module that reaches itself) fails with the cycle spelled out.
//! A module may use its own children (`self::`, `mod x;`); that is not an
//! import.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// `src/a/b.rs` and `src/a/b/mod.rs` -> `a::b`; `src/lib.rs` -> `` (the root).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

fn collect(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap();
            out.insert(module_of(rel), fs::read_to_string(&p).unwrap());
        }
    }
}

/// The code of a file without its comments (doc links name modules too).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path written after `crate::` / `super::`, expanded from
/// `use` groups one level deep (`crate::{a, b::c}`).
fn paths(code: &str, module: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(anchor) {
            let start = from + i;
            from = start + anchor.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            // The base module the path is relative to.
            let mut base: Vec<String> = if anchor == "crate::" {
                Vec::new()
            } else {
                let mut m: Vec<String> = module
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                // In a/b.rs and in a/b/mod.rs (both module a::b) `super` is `a`.
                m.pop();
                m
            };
            let rest = &code[from..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{'))
                .unwrap_or(rest.len());
            let head = &rest[..end];
            if let Some(group) = head.strip_suffix('{').or_else(|| head.strip_suffix("::{")) {
                let prefix: Vec<String> = group
                    .trim_end_matches("::")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let close = rest.find('}').unwrap_or(rest.len());
                for item in rest[end..close].split(',') {
                    let mut p = base.clone();
                    p.extend(prefix.iter().cloned());
                    p.extend(
                        item.trim()
                            .split("::")
                            .filter(|s| !s.is_empty() && *s != "self")
                            .map(|s| s.split_whitespace().next().unwrap_or("").to_string()),
                    );
                    out.push(p);
                }
            } else {
                base.extend(head.split("::").filter(|s| !s.is_empty()).map(String::from));
                out.push(base);
            }
        }
    }
    out
}

/// The longest prefix of `path` that is a module we know.
fn resolve(path: &[String], modules: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// A module depends on its children by containing them, not by importing
/// them; a child's import of an ancestor is an edge.
fn is_descendant(of: &str, m: &str) -> bool {
    of.is_empty() || m.starts_with(&format!("{of}::"))
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    collect(&root, &root, &mut modules);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &modules {
        let set = edges.entry(m.clone()).or_default();
        for p in paths(&code(text), m) {
            if let Some(to) = resolve(&p, &modules) {
                if to != *m && !is_descendant(m, &to) {
                    set.insert(to);
                }
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(cycle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    // The graph is not empty: the parser sees imports at all.
    assert!(edges.values().map(BTreeSet::len).sum::<usize>() > 10);
}
