//! The component's shadow stack: 64 KiB instead of the toolchain's 1 MiB. A host with
//! pooled instance slots zeroes (or faults in) every page an instance's memory has, for
//! every instance: a 1 MiB stack in a 1.1 MiB memory was most of that work per
//! request (docs/performance.md, "Instantiation"). The deepest call path of the test
//! suites uses less than a quarter of it; an overflow traps (the stack is first in
//! memory, so it runs out below address 0), it never writes over data.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("wasm") {
        println!("cargo:rustc-link-arg=-zstack-size={}", 64 * 1024);
    }
    println!("cargo:rerun-if-changed=build.rs");
}
