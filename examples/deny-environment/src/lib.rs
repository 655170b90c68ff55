//! An empty `wasi:cli/environment`, for the benchmark's Spin emulation: Spin composes
//! a component dependency with a deny adapter on every WASI interface the app does not
//! let it inherit (here the environment), so each request instantiates one more
//! component. This one is the project's own, written for the benchmark.

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "example:deny-environment/deny-environment",
    generate_all,
});

use exports::wasi::cli::environment::Guest;

struct Deny;
export!(Deny);

impl Guest for Deny {
    fn get_environment() -> Vec<(String, String)> {
        Vec::new()
    }

    fn get_arguments() -> Vec<String> {
        Vec::new()
    }

    fn initial_cwd() -> Option<String> {
        None
    }
}
