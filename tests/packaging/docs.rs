//! The docs stay true: docs/configuration.md lists the code's keys with their defaults,
//! the README's count of them is right and its quick start is what CI runs, and every
//! relative link in the README and docs/ leads somewhere.

use std::path::PathBuf;
use token_provider_core::KEYS;

#[test]
fn the_configuration_page_lists_every_key_with_its_default() {
    let root = crate::common::repo_root();
    let page = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    let rows: Vec<Vec<String>> = page
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    for key in KEYS {
        let (key, default) = (key.name, key.default);
        let row = rows
            .iter()
            .find(|r| r.get(1).map(String::as_str) == Some(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for `{key}`"));
        let expected = match default {
            None => "(required)".to_string(),
            Some("") => "(empty)".to_string(),
            Some(d) => format!("`{d}`"),
        };
        assert_eq!(
            row[2], expected,
            "default of `{key}` in docs/configuration.md"
        );
    }
    let documented = rows
        .iter()
        .filter(|r| r.len() == 6 && KEYS.iter().any(|k| r[1] == format!("`{}`", k.name)))
        .count();
    assert_eq!(documented, KEYS.len());
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("All {} keys", KEYS.len())),
        "the README counts the keys wrong (there are {})",
        KEYS.len()
    );
}

/// The README is a front page (at most 180 lines), and its quick start is the two
/// commands: the demo and the test command CI runs.
#[test]
fn the_readme_is_a_front_page_with_the_two_commands() {
    let root = crate::common::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 180,
        "{} lines",
        readme.lines().count()
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(ci.contains("./scripts/test.sh"));
    for command in ["./scripts/demo.sh", "./scripts/test.sh"] {
        assert!(readme.contains(command), "{command}");
    }
}

/// The README and every page in docs/.
fn markdown_files() -> Vec<PathBuf> {
    let root = crate::common::repo_root();
    let root = root.as_path();
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// The targets of `[text](target)` links outside fenced code blocks.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut targets = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].to_string());
            }
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_relative_link_in_the_docs_points_to_an_existing_file_and_heading() {
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            assert!(
                linked.exists(),
                "{}: link `{target}` points to {}, which does not exist",
                file.display(),
                linked.display()
            );
            if !fragment.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                let page = std::fs::read_to_string(&linked).unwrap();
                assert!(
                    anchors(&page).iter().any(|a| a == fragment),
                    "{}: link `{target}`: {} has no heading `#{fragment}`",
                    file.display(),
                    linked.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} links checked");
}
