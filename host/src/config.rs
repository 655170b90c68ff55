//! `wasi:config/store` for both drafts the components import (Spin flavor:
//! `wasi:config@0.2.0-draft-2024-09-27`; wasmtime flavor: `wasi:config@0.2.0-rc.1`),
//! wasmtime-style: the embedder keeps a [`WasiConfigVariables`] in its own store state
//! and hands [`add_to_linker`] a function that lends a [`WasiConfig`] view of it.
//!
//! ```no_run
//! # fn demo() -> wasmtime::Result<()> {
//! use token_provider_host::config::{WasiConfig, WasiConfigVariables, add_to_linker};
//! struct MyState {
//!     config: WasiConfigVariables,
//!     // ... the embedder's own state
//! }
//! let engine = wasmtime::Engine::default();
//! let mut linker = wasmtime::component::Linker::<MyState>::new(&engine);
//! add_to_linker(&mut linker, |s: &mut MyState| WasiConfig::from(&s.config))?;
//! # Ok(()) }
//! ```

use crate::bindings::wasi::config0_2_0_draft_2024_09_27 as spin_config;
use crate::bindings::wasmtime_flavor::wasi::config0_2_0_rc_1 as wt_config;
use crate::phases::Phases;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// The variables an instance sees through `wasi:config`.
#[derive(Clone, Debug, Default)]
pub struct WasiConfigVariables {
    vars: Arc<HashMap<String, String>>,
    get_all: bool,
    phases: Option<Phases>,
}

impl WasiConfigVariables {
    /// These variables; `get-all` answers.
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self::shared(Arc::new(vars.into_iter().collect()))
    }

    /// Variables shared by many instances without a copy each.
    pub fn shared(vars: Arc<HashMap<String, String>>) -> Self {
        WasiConfigVariables {
            vars,
            get_all: true,
            phases: None,
        }
    }

    /// `false`: `get-all` fails, as on a host that implements only `get` (tests).
    pub(crate) fn with_get_all(mut self, answers: bool) -> Self {
        self.get_all = answers;
        self
    }

    /// Time each call into `phases` (benchmarks).
    pub(crate) fn with_phases(mut self, phases: Option<Phases>) -> Self {
        self.phases = phases;
        self
    }
}

/// A borrowed view of [`WasiConfigVariables`], what the host functions run on.
pub struct WasiConfig<'a> {
    vars: &'a WasiConfigVariables,
}

impl<'a> From<&'a WasiConfigVariables> for WasiConfig<'a> {
    fn from(vars: &'a WasiConfigVariables) -> Self {
        WasiConfig { vars }
    }
}

struct HasWasiConfig;

impl HasData for HasWasiConfig {
    type Data<'a> = WasiConfig<'a>;
}

/// Link `wasi:config/store` of both drafts, each call answered by the view `f` lends.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    f: fn(&mut T) -> WasiConfig<'_>,
) -> wasmtime::Result<()> {
    spin_config::store::add_to_linker::<T, HasWasiConfig>(linker, f)?;
    wt_config::store::add_to_linker::<T, HasWasiConfig>(linker, f)?;
    Ok(())
}

macro_rules! config_store {
    ($m:ident) => {
        impl $m::store::Host for WasiConfig<'_> {
            async fn get(
                &mut self,
                key: String,
            ) -> wasmtime::Result<Result<Option<String>, $m::store::Error>> {
                let started = std::time::Instant::now();
                let value = self.vars.vars.get(&key).cloned();
                if let Some(p) = &self.vars.phases {
                    p.record("config", started.elapsed());
                }
                Ok(Ok(value))
            }

            async fn get_all(
                &mut self,
            ) -> wasmtime::Result<Result<Vec<(String, String)>, $m::store::Error>> {
                let started = std::time::Instant::now();
                if !self.vars.get_all {
                    return Ok(Err($m::store::Error::Upstream(
                        "get-all is not implemented by this host".into(),
                    )));
                }
                let all = self
                    .vars
                    .vars
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Some(p) = &self.vars.phases {
                    p.record("config", started.elapsed());
                }
                Ok(Ok(all))
            }
        }
    };
}
config_store!(spin_config);
config_store!(wt_config);
