//! What the tests, the benchmarks and the CLI's `demo` and `load` run against: not part
//! of the host an embedder links (the `testkit` feature).

pub mod bulk;
pub mod faultserver;
pub mod load;
pub mod process;
pub mod redis_server;
pub mod testserver;

mod failing_kv;
mod latency_kv;
pub use failing_kv::FailingKv;
pub use latency_kv::LatencyKv;
