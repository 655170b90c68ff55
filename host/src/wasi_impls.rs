//! The host side of the component's draft imports, for both flavors, over one
//! [`KvBackend`](crate::kv::KvBackend) and one config map:
//! - Spin flavor: `wasi:keyvalue@0.2.0-draft2` (store + atomics with `cas`),
//!   `wasi:config@0.2.0-draft-2024-09-27`;
//! - wasmtime flavor: `wasi:keyvalue@0.2.0-draft` (store + `increment` on `u64`),
//!   `wasi:config@0.2.0-rc.1`.
//!
//! The store and config interfaces have the same shape in both drafts (but for the
//! `list-keys` cursor type), so one macro implements them for each generated module.

use crate::bindings::wasi::config0_2_0_draft_2024_09_27 as spin_config;
use crate::bindings::wasi::keyvalue0_2_0_draft2 as spin_kv;
use crate::bindings::wasmtime_flavor::wasi::config0_2_0_rc_1 as wt_config;
use crate::bindings::wasmtime_flavor::wasi::keyvalue0_2_0_draft as wt_kv;
use crate::kv::KvBackend;
use crate::runtime::State;
use wasmtime::component::{HasSelf, Linker, Resource};

const PAGE: usize = 1000;

/// A `wasi:keyvalue` bucket (either draft): the label it was opened with.
pub struct Bucket {
    label: String,
}

/// A `wasi:keyvalue@0.2.0-draft2` compare-and-swap handle.
pub struct Cas {
    label: String,
    key: String,
    current: Option<Vec<u8>>,
}

pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    spin_kv::store::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    spin_kv::atomics::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    spin_config::store::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    wt_kv::store::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    wt_kv::atomics::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    wt_config::store::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    Ok(())
}

impl State {
    fn label(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.label.clone())
    }
}

macro_rules! config_store {
    ($m:ident) => {
        impl $m::store::Host for State {
            async fn get(
                &mut self,
                key: String,
            ) -> wasmtime::Result<Result<Option<String>, $m::store::Error>> {
                Ok(Ok(self.config.get(&key).cloned()))
            }

            async fn get_all(
                &mut self,
            ) -> wasmtime::Result<Result<Vec<(String, String)>, $m::store::Error>> {
                Ok(Ok(self
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()))
            }
        }
    };
}
config_store!(spin_config);
config_store!(wt_config);

/// `wasi:keyvalue/store` for one draft. `$list_keys` maps (state, label, cursor) to the
/// draft's `key-response`, the one place the drafts differ.
macro_rules! kv_store {
    ($m:ident, $cursor:ty, $list_keys:expr) => {
        impl $m::store::Host for State {
            async fn open(
                &mut self,
                identifier: String,
            ) -> wasmtime::Result<Result<Resource<Bucket>, $m::store::Error>> {
                if let Err(e) = self.kv.open(&identifier).await {
                    return Ok(Err($m::store::Error::Other(e)));
                }
                Ok(Ok(self.table.push(Bucket { label: identifier })?))
            }
        }

        impl $m::store::HostBucket for State {
            async fn get(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, $m::store::Error>> {
                let label = self.label(&bucket)?;
                Ok(self
                    .kv
                    .get(&label, &key)
                    .await
                    .map_err($m::store::Error::Other))
            }

            async fn set(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), $m::store::Error>> {
                let label = self.label(&bucket)?;
                Ok(self
                    .kv
                    .set(&label, &key, &value)
                    .await
                    .map_err($m::store::Error::Other))
            }

            async fn delete(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<(), $m::store::Error>> {
                let label = self.label(&bucket)?;
                Ok(self
                    .kv
                    .delete(&label, &key)
                    .await
                    .map_err($m::store::Error::Other))
            }

            async fn exists(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<bool, $m::store::Error>> {
                let label = self.label(&bucket)?;
                Ok(self
                    .kv
                    .exists(&label, &key)
                    .await
                    .map_err($m::store::Error::Other))
            }

            async fn list_keys(
                &mut self,
                bucket: Resource<Bucket>,
                cursor: Option<$cursor>,
            ) -> wasmtime::Result<Result<$m::store::KeyResponse, $m::store::Error>> {
                let label = self.label(&bucket)?;
                Ok($list_keys(&*self.kv, &label, cursor)
                    .await
                    .map_err($m::store::Error::Other))
            }

            async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
                self.table.delete(bucket)?;
                Ok(())
            }
        }
    };
}

// draft2: the cursor is the last key returned.
async fn list_keys_draft2(
    kv: &dyn KvBackend,
    label: &str,
    cursor: Option<String>,
) -> Result<spin_kv::store::KeyResponse, String> {
    let (keys, cursor) = kv.list_keys(label, cursor.as_deref(), PAGE).await?;
    Ok(spin_kv::store::KeyResponse { keys, cursor })
}
kv_store!(spin_kv, String, list_keys_draft2);

// draft: the cursor is a number; we use the count of keys already returned.
async fn list_keys_draft(
    kv: &dyn KvBackend,
    label: &str,
    cursor: Option<u64>,
) -> Result<wt_kv::store::KeyResponse, String> {
    let skip = cursor.unwrap_or(0) as usize;
    let (mut keys, more) = kv.list_keys(label, None, skip + PAGE).await?;
    let keys: Vec<String> = keys.drain(skip.min(keys.len())..).collect();
    let next = more.map(|_| (skip + keys.len()) as u64);
    Ok(wt_kv::store::KeyResponse { keys, cursor: next })
}
kv_store!(wt_kv, u64, list_keys_draft);

impl spin_kv::atomics::Host for State {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, spin_kv::store::Error>> {
        let label = self.label(&bucket)?;
        Ok(self
            .kv
            .increment(&label, &key, delta)
            .await
            .map_err(spin_kv::store::Error::Other))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), spin_kv::atomics::CasError>> {
        use spin_kv::atomics::CasError;
        // Not atomic across processes: the component coordinates with `increment` only.
        let cas = self.table.delete(cas)?;
        Ok(match self.kv.get(&cas.label, &cas.key).await {
            Err(e) => Err(CasError::StoreError(spin_kv::store::Error::Other(e))),
            Ok(now) if now != cas.current => {
                let fresh = self.table.push(Cas {
                    current: now,
                    ..cas
                })?;
                Err(CasError::CasFailed(fresh))
            }
            Ok(_) => self
                .kv
                .set(&cas.label, &cas.key, &value)
                .await
                .map_err(|e| CasError::StoreError(spin_kv::store::Error::Other(e))),
        })
    }
}

impl spin_kv::atomics::HostCas for State {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, spin_kv::store::Error>> {
        let label = self.label(&bucket)?;
        match self.kv.get(&label, &key).await {
            Ok(current) => Ok(Ok(self.table.push(Cas {
                label,
                key,
                current,
            })?)),
            Err(e) => Ok(Err(spin_kv::store::Error::Other(e))),
        }
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, spin_kv::store::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl wt_kv::atomics::Host for State {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, wt_kv::store::Error>> {
        let label = self.label(&bucket)?;
        let delta = i64::try_from(delta)
            .map_err(|_| wasmtime::format_err!("increment delta {delta} too large"));
        let result = match delta {
            Ok(d) => self.kv.increment(&label, &key, d).await.and_then(|n| {
                u64::try_from(n).map_err(|_| format!("value at `{key}` is negative"))
            }),
            Err(e) => Err(e.to_string()),
        };
        Ok(result.map_err(wt_kv::store::Error::Other))
    }
}
