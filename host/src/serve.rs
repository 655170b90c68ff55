//! Handling HTTP requests with a WASIp3 service component: one that exports
//! `wasi:http/handler@0.3.0`, such as an app composed with the token interceptor. The
//! component runs in a fresh instance of this host per call ([`TokenHost::handle_http`])
//! or in one kept between requests ([`ServiceInstance`]), with what [`Inherit`] grants
//! of the provider's setup, and sends its own requests through the host's
//! `wasi:http/client@0.3.0` (the same outbound HTTP, TLS and allow-list as the provider).

use crate::{Inherit, State, TokenHost};
use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi_http::p3::Request;
use wasmtime_wasi_http::p3::bindings::Service;
pub use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

/// The answer of a service component: status, headers and the whole body.
pub type ServiceResponse = http::Response<Bytes>;

impl TokenHost {
    /// `request` handled by `component` (a WASIp3 HTTP service) in a fresh instance.
    /// `Ok(Err(code))` is the component's own error answer; `Err` is a trap or a host
    /// failure.
    pub async fn handle_http<B>(
        &self,
        component: &Component,
        inherit: Inherit,
        request: http::Request<B>,
    ) -> anyhow::Result<Result<ServiceResponse, ErrorCode>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut answers = self
            .handle_http_concurrently(component, inherit, vec![request])
            .await?;
        Ok(answers.remove(0))
    }

    /// `requests` handled by one fresh instance of `component`, all at once (the
    /// component model's async lets one instance serve them concurrently); the answers
    /// in the order of the requests. The instance is dropped once its tasks have ended
    /// (a body still streaming, a renewal the interceptor spawned after answering), as
    /// Spin drops an instance.
    pub async fn handle_http_concurrently<B>(
        &self,
        component: &Component,
        inherit: Inherit,
        requests: Vec<http::Request<B>>,
    ) -> anyhow::Result<Vec<Result<ServiceResponse, ErrorCode>>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.service_instance(component, inherit)
            .await?
            .serve(requests, true)
            .await
    }

    /// A fresh instance of `component` (a WASIp3 HTTP service) to handle any number of
    /// requests, one after the other or together: a warm instance, as a host that
    /// keeps instances gives them.
    pub async fn service_instance(
        &self,
        component: &Component,
        inherit: Inherit,
    ) -> anyhow::Result<ServiceInstance> {
        let mut store = self.new_store(inherit);
        let service = Service::instantiate_async(&mut store, component, self.linker()?).await?;
        Ok(ServiceInstance { store, service })
    }
}

/// One instance of a WASIp3 HTTP service, kept between requests.
pub struct ServiceInstance {
    store: Store<State>,
    service: Service,
}

impl ServiceInstance {
    /// `request` handled by this instance.
    pub async fn handle<B>(
        &mut self,
        request: http::Request<B>,
    ) -> anyhow::Result<Result<ServiceResponse, ErrorCode>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut answers = self.handle_all(vec![request]).await?;
        Ok(answers.remove(0))
    }

    /// `requests` handled by this instance, all at once; the answers in their order.
    /// Tasks the instance has left when they are answered (a renewal spawned after
    /// answering) go on in the next call.
    pub async fn handle_all<B>(
        &mut self,
        requests: Vec<http::Request<B>>,
    ) -> anyhow::Result<Vec<Result<ServiceResponse, ErrorCode>>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.serve(requests, false).await
    }

    /// `requests` handled at once; with `to_the_end`, also every task they leave
    /// behind, to its end.
    async fn serve<B>(
        &mut self,
        requests: Vec<http::Request<B>>,
        to_the_end: bool,
    ) -> anyhow::Result<Vec<Result<ServiceResponse, ErrorCode>>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let (store, service) = (&mut self.store, &self.service);
        let mut calls = Vec::with_capacity(requests.len());
        for request in requests {
            calls.push(Request::from_http(&mut store.data_mut().hooks, request));
        }
        store
            .run_concurrent(async |store| {
                let calls = calls.into_iter().map(|(request, request_io)| async move {
                    let answer = async {
                        let response = match service.handle(store, request).await? {
                            Ok(response) => response,
                            Err(code) => return anyhow::Ok(Err(code)),
                        };
                        let response =
                            store.with(|store| response.into_http(store, async { Ok(()) }))?;
                        Ok(Ok(whole(response).await?))
                    };
                    let (answer, sent) = tokio::join!(answer, request_io);
                    sent.map_err(|e| anyhow::anyhow!("sending the request body: {e:?}"))?;
                    answer
                });
                let answers = futures::future::join_all(calls).await;
                if to_the_end {
                    std::future::poll_fn(|cx| store.poll_no_interesting_tasks(cx)).await;
                }
                answers.into_iter().collect::<anyhow::Result<Vec<_>>>()
            })
            .await?
    }
}

/// `response` with its whole body read.
pub(crate) async fn whole(
    response: http::Response<wasmtime_wasi_http::WasiBody>,
) -> anyhow::Result<ServiceResponse> {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response body: {e:?}"))?
        .to_bytes();
    Ok(http::Response::from_parts(parts, body))
}
