//! A test component that tries to read its host's configuration and key-value store
//! (the Spin flavor's drafts). `tests/packaging/composition.rs` instantiates it with and
//! without the host's opt-in, to check what a component beside the provider can reach.

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "example:probe/probe",
    generate_all,
});

use exports::example::probe::reach::Guest;
use wasi::config0_2_0_draft_2024_09_27::store as config;
use wasi::keyvalue0_2_0_draft2::store as kv;

struct Probe;
export!(Probe);

impl Guest for Probe {
    fn config_get(key: String) -> Result<Option<String>, String> {
        config::get(&key).map_err(|e| format!("{e:?}"))
    }

    fn config_get_all() -> Result<Vec<(String, String)>, String> {
        config::get_all().map_err(|e| format!("{e:?}"))
    }

    fn store_keys(label: String) -> Result<Vec<String>, String> {
        let bucket = kv::open(&label).map_err(|e| format!("{e:?}"))?;
        let page = bucket.list_keys(None).map_err(|e| format!("{e:?}"))?;
        Ok(page.keys)
    }
}
