//! What the tests, the benchmarks and the CLI's `demo` and `load` run against: not part
//! of the host an embedder links (the `testkit` feature).

pub mod bulk;
pub mod dpop;
pub mod faultserver;
pub mod load;
pub mod process;
pub mod redis_server;
pub mod testserver;

mod failing_kv;
mod latency_kv;
pub use failing_kv::FailingKv;
pub use latency_kv::LatencyKv;

/// Serve HTTP/1.1 on `listener` until the task is aborted: each connection on its own
/// task, each request answered by `handle(state.clone(), request)`. The in-process
/// servers (`testserver`, `bulk`) share this loop.
pub(crate) fn serve_http1<S, F, Fut, B>(
    listener: tokio::net::TcpListener,
    state: S,
    handle: F,
) -> tokio::task::JoinHandle<()>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, hyper::Request<hyper::body::Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<B>, hyper::Error>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
