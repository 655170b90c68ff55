//! `wasi:keyvalue` for both drafts the components import, over one
//! [`KvBackend`](crate::kv::KvBackend):
//! - Spin flavor: `wasi:keyvalue@0.2.0-draft2` (store + atomics with `cas`);
//! - wasmtime flavor: `wasi:keyvalue@0.2.0-draft` (store + `increment` on `u64`).
//!
//! The store interfaces have the same shape in both drafts (but for the `list-keys`
//! cursor type), so one macro implements them for each generated module. Wasmtime-style:
//! the embedder keeps a [`WasiKeyValueCtx`] (and a `ResourceTable`) in its own store
//! state and hands [`add_to_linker`] a function that lends a [`WasiKeyValue`] view.
//!
//! ```no_run
//! # fn demo() -> wasmtime::Result<()> {
//! use std::sync::Arc;
//! use token_provider_host::keyvalue::{WasiKeyValue, WasiKeyValueCtx, add_to_linker};
//! use token_provider_host::kv::MemoryKv;
//! struct MyState {
//!     kv: WasiKeyValueCtx,
//!     table: wasmtime::component::ResourceTable,
//! }
//! let engine = wasmtime::Engine::default();
//! let mut linker = wasmtime::component::Linker::<MyState>::new(&engine);
//! add_to_linker(&mut linker, |s: &mut MyState| WasiKeyValue::new(&s.kv, &mut s.table))?;
//! let state = MyState {
//!     kv: WasiKeyValueCtx::new(Arc::new(MemoryKv::new())),
//!     table: Default::default(),
//! };
//! # Ok(()) }
//! ```

use crate::bindings::wasi::keyvalue0_2_0_draft2 as spin_kv;
use crate::bindings::wasmtime_flavor::wasi::keyvalue0_2_0_draft as wt_kv;
use crate::kv::KvBackend;
use crate::phases::{Phases, timed};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// The store an instance may open: every label opens the same backend (its labels are
/// the backend's namespaces), or, without one, `open` is `access-denied`.
#[derive(Clone, Default)]
pub struct WasiKeyValueCtx {
    kv: Option<Arc<dyn KvBackend>>,
    phases: Option<Phases>,
}

impl WasiKeyValueCtx {
    /// Buckets over `kv`.
    pub fn new(kv: Arc<dyn KvBackend>) -> Self {
        WasiKeyValueCtx {
            kv: Some(kv),
            phases: None,
        }
    }

    /// No store: every `open` is `access-denied`.
    pub fn denied() -> Self {
        Self::default()
    }

    /// Time each call into `phases` (benchmarks).
    pub(crate) fn with_phases(mut self, phases: Option<Phases>) -> Self {
        self.phases = phases;
        self
    }
}

/// A borrowed view of a [`WasiKeyValueCtx`] and the table its buckets live in.
pub struct WasiKeyValue<'a> {
    ctx: &'a WasiKeyValueCtx,
    table: &'a mut ResourceTable,
}

impl<'a> WasiKeyValue<'a> {
    /// The view the host functions run on.
    pub fn new(ctx: &'a WasiKeyValueCtx, table: &'a mut ResourceTable) -> Self {
        WasiKeyValue { ctx, table }
    }

    /// The label and store of an open bucket.
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<(String, Arc<dyn KvBackend>)> {
        let bucket = self.table.get(bucket)?;
        Ok((bucket.label.clone(), bucket.kv.clone()))
    }
}

struct HasWasiKeyValue;

impl HasData for HasWasiKeyValue {
    type Data<'a> = WasiKeyValue<'a>;
}

/// Link `wasi:keyvalue/store` and `atomics` of both drafts, each call answered by the
/// view `f` lends.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    f: fn(&mut T) -> WasiKeyValue<'_>,
) -> wasmtime::Result<()> {
    spin_kv::store::add_to_linker::<T, HasWasiKeyValue>(linker, f)?;
    spin_kv::atomics::add_to_linker::<T, HasWasiKeyValue>(linker, f)?;
    wt_kv::store::add_to_linker::<T, HasWasiKeyValue>(linker, f)?;
    wt_kv::atomics::add_to_linker::<T, HasWasiKeyValue>(linker, f)?;
    Ok(())
}

/// Keys per `list-keys` page (a hint to the backend: Redis's `SCAN … COUNT`).
const PAGE: usize = 1000;

/// A `wasi:keyvalue` bucket (either draft): the label it was opened with, and the store.
pub struct Bucket {
    label: String,
    kv: Arc<dyn KvBackend>,
}

/// A `wasi:keyvalue@0.2.0-draft2` compare-and-swap handle.
pub struct Cas {
    label: String,
    key: String,
    current: Option<Vec<u8>>,
    kv: Arc<dyn KvBackend>,
}

/// `wasi:keyvalue/store` for one draft. `$list_keys` maps (state, label, cursor) to the
/// draft's `key-response`, the one place the drafts differ.
macro_rules! kv_store {
    ($m:ident, $cursor:ty, $list_keys:expr) => {
        impl $m::store::Host for WasiKeyValue<'_> {
            async fn open(
                &mut self,
                identifier: String,
            ) -> wasmtime::Result<Result<Resource<Bucket>, $m::store::Error>> {
                // An instance not given the store (`Inherit`) cannot open any.
                let Some(kv) = self.ctx.kv.clone() else {
                    return Ok(Err($m::store::Error::AccessDenied));
                };
                let opened = timed(&self.ctx.phases, "store.open", kv.open(&identifier)).await;
                if let Err(e) = opened {
                    return Ok(Err($m::store::Error::Other(e)));
                }
                Ok(Ok(self.table.push(Bucket {
                    label: identifier,
                    kv,
                })?))
            }
        }

        impl $m::store::HostBucket for WasiKeyValue<'_> {
            async fn get(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, $m::store::Error>> {
                let (label, kv) = self.bucket(&bucket)?;
                let got = timed(&self.ctx.phases, "store.get", kv.get(&label, &key)).await;
                Ok(got.map_err($m::store::Error::Other))
            }

            async fn set(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), $m::store::Error>> {
                let (label, kv) = self.bucket(&bucket)?;
                let set = timed(
                    &self.ctx.phases,
                    "store.write",
                    kv.set(&label, &key, &value),
                )
                .await;
                Ok(set.map_err($m::store::Error::Other))
            }

            async fn delete(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<(), $m::store::Error>> {
                let (label, kv) = self.bucket(&bucket)?;
                let deleted = timed(&self.ctx.phases, "store.write", kv.delete(&label, &key)).await;
                Ok(deleted.map_err($m::store::Error::Other))
            }

            async fn exists(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> wasmtime::Result<Result<bool, $m::store::Error>> {
                let (label, kv) = self.bucket(&bucket)?;
                Ok(kv
                    .exists(&label, &key)
                    .await
                    .map_err($m::store::Error::Other))
            }

            async fn list_keys(
                &mut self,
                bucket: Resource<Bucket>,
                cursor: Option<$cursor>,
            ) -> wasmtime::Result<Result<$m::store::KeyResponse, $m::store::Error>> {
                let (label, kv) = self.bucket(&bucket)?;
                Ok($list_keys(&*kv, &label, cursor)
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

// Both drafts carry the backend's cursor (`KeyPage::cursor`) to the next page: draft2
// as its decimal text, draft as the number itself.
async fn list_keys_draft2(
    kv: &dyn KvBackend,
    label: &str,
    cursor: Option<String>,
) -> Result<spin_kv::store::KeyResponse, String> {
    let cursor = match cursor {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| "list-keys: not a cursor this store returned".to_string())?,
        ),
    };
    let page = kv.list_keys(label, cursor, PAGE).await?;
    Ok(spin_kv::store::KeyResponse {
        keys: page.keys,
        cursor: page.cursor.map(|c| c.to_string()),
    })
}
kv_store!(spin_kv, String, list_keys_draft2);

async fn list_keys_draft(
    kv: &dyn KvBackend,
    label: &str,
    cursor: Option<u64>,
) -> Result<wt_kv::store::KeyResponse, String> {
    let page = kv.list_keys(label, cursor, PAGE).await?;
    Ok(wt_kv::store::KeyResponse {
        keys: page.keys,
        cursor: page.cursor,
    })
}
kv_store!(wt_kv, u64, list_keys_draft);

impl spin_kv::atomics::Host for WasiKeyValue<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, spin_kv::store::Error>> {
        let (label, kv) = self.bucket(&bucket)?;
        let counted = timed(
            &self.ctx.phases,
            "store.write",
            kv.increment(&label, &key, delta),
        )
        .await;
        Ok(counted.map_err(spin_kv::store::Error::Other))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), spin_kv::atomics::CasError>> {
        use spin_kv::atomics::CasError;
        // Not atomic across processes: the component coordinates with `increment` only.
        let cas = self.table.delete(cas)?;
        Ok(match cas.kv.get(&cas.label, &cas.key).await {
            Err(e) => Err(CasError::StoreError(spin_kv::store::Error::Other(e))),
            Ok(now) if now != cas.current => {
                let fresh = self.table.push(Cas {
                    current: now,
                    ..cas
                })?;
                Err(CasError::CasFailed(fresh))
            }
            Ok(_) => cas
                .kv
                .set(&cas.label, &cas.key, &value)
                .await
                .map_err(|e| CasError::StoreError(spin_kv::store::Error::Other(e))),
        })
    }
}

impl spin_kv::atomics::HostCas for WasiKeyValue<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, spin_kv::store::Error>> {
        let (label, kv) = self.bucket(&bucket)?;
        match kv.get(&label, &key).await {
            Ok(current) => Ok(Ok(self.table.push(Cas {
                label,
                key,
                current,
                kv,
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

impl wt_kv::atomics::Host for WasiKeyValue<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, wt_kv::store::Error>> {
        let (label, kv) = self.bucket(&bucket)?;
        let delta = i64::try_from(delta)
            .map_err(|_| wasmtime::format_err!("increment delta {delta} too large"));
        let result = match delta {
            Ok(d) => timed(
                &self.ctx.phases,
                "store.write",
                kv.increment(&label, &key, d),
            )
            .await
            .and_then(|n| u64::try_from(n).map_err(|_| format!("value at `{key}` is negative"))),
            Err(e) => Err(e.to_string()),
        };
        Ok(result.map_err(wt_kv::store::Error::Other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;
    use std::collections::BTreeSet;

    const DRAFTS: [&str; 2] = ["draft2", "draft"];

    /// Every key of `label` through one draft's `list-keys`, page by page: the keys in
    /// the order returned, and the number of pages.
    async fn list_all(kv: &dyn KvBackend, label: &str, draft: &str) -> (Vec<String>, usize) {
        let (mut keys, mut pages) = (Vec::new(), 0);
        let (mut cursor2, mut cursor) = (None, None);
        loop {
            pages += 1;
            assert!(pages < 1000, "{draft} list-keys does not end");
            let more = if draft == "draft2" {
                let page = list_keys_draft2(kv, label, cursor2).await.unwrap();
                keys.extend(page.keys);
                cursor2 = page.cursor;
                cursor2.is_some()
            } else {
                let page = list_keys_draft(kv, label, cursor).await.unwrap();
                keys.extend(page.keys);
                cursor = page.cursor;
                cursor.is_some()
            };
            if !more {
                return (keys, pages);
            }
        }
    }

    /// `keys` hold each of `expected` exactly once and nothing else.
    fn assert_once_each(keys: &[String], expected: &BTreeSet<String>, what: &str) {
        let seen: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(seen.len(), keys.len(), "{what}: a key came twice");
        assert!(
            seen == *expected,
            "{what}: {} keys, not the {} expected",
            seen.len(),
            expected.len()
        );
    }

    #[tokio::test]
    async fn memory_list_keys_returns_every_key_once_over_several_pages() {
        let kv = MemoryKv::new();
        let expected: BTreeSet<String> = (0..2 * PAGE + 17).map(|i| format!("k{i:05}")).collect();
        for k in &expected {
            kv.set("s", k, b"v").await.unwrap();
        }
        kv.set("other", "k-other", b"v").await.unwrap();
        for draft in DRAFTS {
            let (keys, pages) = list_all(&kv, "s", draft).await;
            assert_once_each(&keys, &expected, draft);
            assert_eq!(pages, 3, "{draft}");
        }
    }

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn redis_list_keys_returns_every_key_once_with_a_bounded_number_of_scans() {
        let redis = crate::testkit::redis_server::LocalRedis::start().unwrap();
        let kv = crate::kv::RedisKv::connect(&redis.url()).await.unwrap();
        let expected: BTreeSet<String> = (0..5000).map(|i| format!("k{i:05}")).collect();
        for k in &expected {
            kv.set("s", k, b"v").await.unwrap();
        }
        for i in 0..300 {
            kv.set("other", &format!("o{i}"), b"v").await.unwrap();
        }
        let total = expected.len() + 300;
        for draft in DRAFTS {
            redis.reset_stats().unwrap();
            let (keys, pages) = list_all(&kv, "s", draft).await;
            let scans = redis.command_calls("scan").unwrap();
            eprintln!(
                "{draft}: {} keys in {pages} pages, {scans} SCAN calls",
                keys.len()
            );
            assert_once_each(&keys, &expected, draft);
            // One SCAN per page, each reading about PAGE keys of the whole database: the
            // database is read about once, not once per page.
            let bound = (total / PAGE) as u64 * 2 + 2;
            assert!(
                scans <= bound,
                "{draft}: {scans} SCAN calls for {total} keys (bound {bound})"
            );
        }
    }

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn redis_list_keys_of_a_label_sees_only_that_labels_keys() {
        let redis = crate::testkit::redis_server::LocalRedis::start().unwrap();
        let kv = crate::kv::RedisKv::connect(&redis.url()).await.unwrap();
        kv.set("a", "k1", b"v").await.unwrap();
        kv.set("a", "k2", b"v").await.unwrap();
        kv.set("b", "k3", b"v").await.unwrap();
        kv.set("b*", "k4", b"v").await.unwrap();
        let set = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
        for (label, want) in [
            ("a", set(&["k1", "k2"])),
            ("b", set(&["k3"])),
            ("b*", set(&["k4"])),
        ] {
            for draft in DRAFTS {
                let (keys, _) = list_all(&kv, label, draft).await;
                assert_once_each(&keys, &want, &format!("{label} {draft}"));
            }
        }
    }
}
