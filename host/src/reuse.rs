//! Running a WASIp3 HTTP service the way Spin 4.1 does. Spin's HTTP trigger
//! (`crates/trigger-http`) hands requests to wasmtime-wasi-http's
//! [`ProxyHandler`](wasmtime_wasi_http::handler::ProxyHandler) with these limits: an
//! instance serves up to 16 requests at once and 128 in all, and is dropped after 1 s
//! idle. A request goes to a worker (an instance) that has room, or to a new one. An
//! instance whose requests are answered but whose tasks go on (a body still streaming,
//! a token renewal the interceptor spawned) is not idle: it is kept until its tasks
//! end, and may take new requests meanwhile; a used-up instance takes no more requests
//! and is dropped once its tasks end. With no `--request-timeout` (Spin's default),
//! nothing else ends an instance.
//!
//! [`ServicePool`] runs the same handler with the same policy ([`Reuse::SPIN`]), for
//! the interceptor's tests and benchmark.

use crate::serve::{ErrorCode, ServiceResponse};
use crate::{Inherit, State, TokenHost};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, GuestTaskId};
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// How instances are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Requests an instance serves in all (`--max-instance-reuse-count`).
    pub max_requests: usize,
    /// Requests an instance serves at once (`--max-instance-concurrent-reuse-count`).
    pub max_concurrent: usize,
    /// How long an instance with no request and no task is kept
    /// (`--idle-instance-timeout`).
    pub idle: Duration,
}

impl Reuse {
    /// Spin 4.1's defaults for WASIp3 components.
    pub const SPIN: Reuse = Reuse {
        max_requests: 128,
        max_concurrent: 16,
        idle: Duration::from_secs(1),
    };
}

/// The answer to one request: `Ok(Err(code))` is the component's own error answer,
/// `Err` a trap or a host failure.
pub type Answer = anyhow::Result<Result<ServiceResponse, ErrorCode>>;

/// Instances of one WASIp3 service component, reused as [`Reuse`] says.
#[derive(Clone)]
pub struct ServicePool {
    handler: ProxyHandler<Pool>,
}

/// The pool's side of the handler: how to make an instance, and the limits.
struct Pool {
    host: TokenHost,
    pre: ProxyPre<State>,
    inherit: Inherit,
    reuse: Reuse,
    made: AtomicUsize,
    traps: Arc<Mutex<Vec<String>>>,
}

impl TokenHost {
    /// A pool of instances of `component` (a WASIp3 HTTP service), reused as `reuse`
    /// says ([`Reuse::SPIN`]: as Spin 4.1 does).
    pub fn service_pool(
        &self,
        component: &Component,
        inherit: Inherit,
        reuse: Reuse,
    ) -> anyhow::Result<ServicePool> {
        let pre = ServicePre::new(self.linker()?.instantiate_pre(component)?)?;
        Ok(ServicePool {
            handler: ProxyHandler::new(Pool {
                host: self.clone(),
                pre: ProxyPre::P3(pre),
                inherit,
                reuse,
                made: AtomicUsize::new(0),
                traps: Arc::default(),
            }),
        })
    }
}

impl ServicePool {
    /// `request` handled by an instance with room for it, or by a new one; the answer
    /// with its whole body.
    pub async fn handle<B>(&self, request: http::Request<B>) -> Answer
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let request = request.map(|b| b.map_err(Into::into).boxed_unsync());
        let response = match self.handler.handle((), request).await {
            Ok(response) => response,
            Err(e) => {
                return match e.downcast::<ErrorCode>() {
                    Ok(code) => Ok(Err(code)),
                    Err(e) => {
                        let traps = self.handler.state().traps.lock().unwrap().clone();
                        Err(anyhow::anyhow!("{e:?} (the pool's traps: {traps:#?})"))
                    }
                };
            }
        };
        Ok(Ok(crate::serve::whole(response).await?))
    }

    /// Instances made so far.
    pub fn instances_made(&self) -> usize {
        self.handler.state().made.load(Ordering::Relaxed)
    }
}

impl HandlerState for Pool {
    type StoreData = State;
    type WorkerExpiration = IdleTimeout;
    type WorkerState = Limits;

    async fn instantiate(&self) -> wasmtime::Result<Instance<State, IdleTimeout, Limits>> {
        let mut store = self.host.new_store(self.inherit);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.made.fetch_add(1, Ordering::Relaxed);
        Ok(Instance {
            store,
            proxy,
            view: |state: &mut State| state.http(),
            expiration: IdleTimeout {
                idle: self.reuse.idle,
                timer: None,
            },
            state: Limits {
                reuse: self.reuse,
                traps: self.traps.clone(),
            },
        })
    }
}

/// An instance ends after `idle` with no request and no task, and at no other time
/// (no request timeout, as Spin's default).
struct IdleTimeout {
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WorkerExpiration for IdleTimeout {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        if status != WorkerStatus::Idle {
            self.timer = None;
            return Poll::Pending;
        }
        let deadline = tokio::time::Instant::from_std(start + self.idle);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }
}

/// How many requests an instance takes; the traps of the pool's instances.
struct Limits {
    reuse: Reuse,
    traps: Arc<Mutex<Vec<String>>>,
}

impl WorkerState for Limits {
    type StoreData = State;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, State>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + 'static + Send + Sync>> {
        // No request timeout.
        Box::pin(std::future::pending())
    }

    fn drop(&self, _store: Store<State>, result: wasmtime::Result<()>) {
        // A worker dropped with the runtime (a test's end) says it panicked: nothing to
        // keep. A trap is kept: the request it happened in only learns that one did.
        if let Err(e) = result {
            let e = format!("{e:?}");
            if !e.starts_with("worker panicked") {
                self.traps.lock().unwrap().push(e);
            }
        }
    }
}
