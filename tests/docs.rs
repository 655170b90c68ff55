//! The README's configuration table matches the code's list of keys and defaults.

use token_provider::config::KEYS;

#[test]
fn readme_config_table_lists_every_key_with_its_default() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rows: Vec<Vec<String>> = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    for key in KEYS {
        let (key, default) = (key.name, key.default);
        let row = rows
            .iter()
            .find(|r| r.get(1).map(String::as_str) == Some(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("README has no config row for `{key}`"));
        let expected = match default {
            None => "(required)".to_string(),
            Some("") => "(empty)".to_string(),
            Some(d) => format!("`{d}`"),
        };
        assert_eq!(row[2], expected, "default of `{key}` in the README");
    }
    let documented = rows
        .iter()
        .filter(|r| r.len() == 6 && KEYS.iter().any(|k| r[1] == format!("`{}`", k.name)))
        .count();
    assert_eq!(documented, KEYS.len());
}
