//! The walls between the core's parts, checked from the source: no import circle, and
//! the settings assembled at the top.
//!
//! Every `crate::…` and `super::…` path outside the unit tests is an edge from the
//! file that names it to the file that defines what it names (a `mod` declaration is
//! not an edge). Two graphs are checked for circles: between files, and between the
//! crate's top-level modules (its layers: `oauth`, `store`, `provider`, `send`,
//! `config` and the small utilities). And no module but `config` itself names
//! `crate::config`: each part defines its own settings and `config` only reads the
//! keys and assembles them. docs/architecture.md shows the layers these checks keep.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file's module path (`provider::lease`; the crate root is empty).
type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module of the crate with its source outside `#[cfg(test)]` items. The test
/// helpers (`testing.rs`) are test code.
fn modules() -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src()).unwrap().with_extension("");
            let mut module: Module = rel.iter().map(|p| p.to_string_lossy().into()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            if module == ["testing"] {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(module, without_tests(&text));
        }
    }
    out
}

/// The text before the unit tests (`#[cfg(test)]` followed by a `mod`).
fn without_tests(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names: `crate::a::b…` and `super::a…` (with their `{…}` groups
/// read as the prefix alone, which names the module they are in).
fn named_paths(text: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for (start, is_crate) in [("crate::", true), ("super::", false)] {
        let mut rest = text;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            rest = &rest[i + start.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts = path
                .split("::")
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
            out.push((is_crate, parts));
        }
    }
    out
}

/// The longest prefix of `path` that is a module (the file defining what it names).
fn resolve(path: &[String], modules: &BTreeMap<Module, String>) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains_key(m))
        .unwrap_or_default()
}

/// Edges between files: who names whom.
fn file_edges(modules: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in modules {
        for (is_crate, path) in named_paths(text) {
            let full = if is_crate {
                path
            } else {
                // `super` of `a::b` (file a/b.rs) is `a`.
                let mut parent = module.clone();
                parent.pop();
                parent.extend(path);
                parent
            };
            let target = resolve(&full, modules);
            if &target != module && !target.is_empty() {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
        // A child module named by its own name (`use lease::look;`, `lease::look()`).
        for child in modules.keys().filter(|c| c.len() == module.len() + 1) {
            let name = child.last().unwrap();
            if child[..module.len()] == module[..] && names_child(text, name) {
                edges
                    .entry(module.clone())
                    .or_default()
                    .insert(child.clone());
            }
        }
    }
    edges
}

/// Whether `text` names `child::…` (or `self::child::…`) other than in a `mod` line.
fn names_child(text: &str, child: &str) -> bool {
    let pattern = format!("{child}::");
    text.match_indices(&pattern).any(|(i, _)| {
        let before = &text[..i];
        before.ends_with("self::")
            || !before
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

/// A circle in `edges`, if there is one.
fn circle<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        n: &N,
        edges: &BTreeMap<N, BTreeSet<N>>,
        path: &mut Vec<N>,
        done: &mut BTreeSet<N>,
    ) -> Option<Vec<N>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut found = path[i..].to_vec();
            found.push(n.clone());
            return Some(found);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.clone());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

fn show(modules: &[Module]) -> String {
    modules
        .iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_file_names_a_file_that_names_it_back() {
    let modules = modules();
    let edges = file_edges(&modules);
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 40,
        "the checker sees too few imports to be reading the source: {edges:?}"
    );
    if let Some(c) = circle(&edges) {
        panic!("import circle between files: {}", show(&c));
    }
}

#[test]
fn no_layer_names_a_layer_that_names_it_back() {
    let modules = modules();
    let mut layers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in file_edges(&modules) {
        for to in targets {
            if from[0] != to[0] {
                layers
                    .entry(from[0].clone())
                    .or_default()
                    .insert(to[0].clone());
            }
        }
    }
    if let Some(c) = circle(&layers) {
        panic!("import circle between layers: {}", c.join(" -> "));
    }
    // The layers as docs/architecture.md draws them: each names only those below it.
    let names = |layer: &str| layers.get(layer).cloned().unwrap_or_default();
    for below_config in ["provider", "send", "oauth", "store"] {
        assert!(
            names("config").contains(below_config),
            "config assembles the settings {below_config} defines"
        );
    }
    assert!(names("send").contains("provider"), "send uses the provider");
    assert!(
        !names("provider").contains("send"),
        "the provider knows no sender"
    );
    assert!(
        !names("oauth").contains("store"),
        "the protocol knows no store"
    );
    assert!(
        !names("oauth").contains("provider"),
        "the protocol knows no provider"
    );
}

#[test]
fn only_config_names_config() {
    let modules = modules();
    let offenders: Vec<String> = modules
        .iter()
        .filter(|(m, _)| m.first().map(String::as_str) != Some("config") && !m.is_empty())
        .filter(|(_, text)| text.contains("crate::config"))
        .map(|(m, _)| m.join("::"))
        .collect();
    assert!(
        offenders.is_empty(),
        "these modules import config (each part owns its settings): {offenders:?}"
    );
}

#[test]
fn the_checker_sees_a_circle_and_a_config_import() {
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let mut edges = BTreeMap::new();
    edges.insert(a.clone(), BTreeSet::from([b.clone()]));
    edges.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(circle(&edges), Some(vec![a.clone(), b.clone(), a.clone()]));
    edges.get_mut(&b).unwrap().clear();
    assert_eq!(circle(&edges), None);
    let text = without_tests(
        "use crate::config::Settings;\nfn f() { super::lease::look(); }\n#[cfg(test)]\nmod tests {\n use crate::store::Entry;\n}",
    );
    let paths = named_paths(&text);
    assert!(paths.contains(&(true, vec!["config".into(), "Settings".into()])));
    assert!(paths.contains(&(false, vec!["lease".into(), "look".into()])));
    assert!(!text.contains("crate::store"), "unit tests are left out");
}
