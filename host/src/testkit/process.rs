//! Child processes that must see the environment a user's shell would give them, not
//! the one cargo sets up for a build script, test or benchmark (nested cargo builds
//! otherwise inherit `CARGO_*`, `RUSTFLAGS`, target settings and the outer lock).
//! Shared by `build.rs` (through `#[path]`), the tests and the benchmarks.

use std::process::Command;

/// What cargo and rustup need; everything else is cleared.
const KEEP: [&str; 6] = [
    "PATH",
    "HOME",
    "RUSTUP_HOME",
    "CARGO_HOME",
    "RUSTUP_TOOLCHAIN",
    "TMPDIR",
];

/// Clear `cmd`'s environment but for what cargo and rustup need.
pub fn user_environment(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for key in KEEP {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd
}
