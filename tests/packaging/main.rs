//! What ships around the component: its WIT contract as built, the Spin app's
//! manifest and imports, composition with another component, and the docs (the
//! configuration table, the links).

use token_provider_tests as common;

mod composition;
mod contract;
mod docs;
mod interceptor;
mod reuse;
mod spin_app;
mod spin_p3_app;
mod wasip3;
