//! Outbound HTTP for the component's `wasi:http` calls: plain TCP or TLS with the
//! webpki roots plus any CA the user trusts (`--ca-cert`), with the request options'
//! connect, first-byte and between-bytes timeouts, and one overall deadline per
//! exchange derived from them (see `Limits`).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// TLS client settings: webpki roots plus extra trusted CAs.
pub fn tls_config(
    extra_roots: &[CertificateDer<'static>],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Read every certificate in a PEM file.
pub fn read_pem_certs(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate found",
        path.display()
    );
    Ok(certs)
}

/// The `wasi:http` hooks of our host: everything default but how requests are sent.
pub(crate) struct Hooks {
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// May this instance send requests at all? (`http-request-denied` if not.)
    pub(crate) allowed: bool,
    /// Time each exchange up to the response head as `http`, when on.
    pub(crate) phases: Option<crate::phases::Phases>,
}

type BoxFuture<T> = Box<dyn Future<Output = T> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: BoxFuture<Result<(), HttpError>>,
    ) -> BoxFuture<
        wasmtime_wasi_http::Result<(http::Response<WasiBody>, BoxFuture<Result<(), HttpError>>)>,
    > {
        drop(fut);
        if !self.allowed {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let tls = self.tls.clone();
        let phases = self.phases.clone();
        Box::new(async move {
            crate::phases::timed(
                &phases,
                "http",
                send(request, options.unwrap_or_default(), tls),
            )
            .await
        })
    }
}

/// The limits of one exchange, from the request options (absent: 600 s each):
/// - connecting (TCP, TLS handshake and HTTP handshake together) within
///   `connect_timeout` of the start;
/// - the response head within `first_byte_timeout` of the request being sent;
/// - no more than `between_bytes_timeout` between body frames;
/// - and the whole exchange, body included, over by the **overall deadline**:
///   `connect_timeout + first_byte_timeout + between_bytes_timeout` after the start. A
///   server that drip-feeds the body never trips the between-bytes timer, and is cut
///   off there.
struct Limits {
    connected_by: Instant,
    first_byte: Duration,
    between_bytes: Duration,
    deadline: Instant,
}

impl Limits {
    fn new(options: &RequestOptions, start: Instant) -> Limits {
        let connect = options.connect_timeout.unwrap_or(DEFAULT_TIMEOUT);
        let first_byte = options.first_byte_timeout.unwrap_or(DEFAULT_TIMEOUT);
        let between_bytes = options
            .between_bytes_timeout
            .unwrap_or(DEFAULT_TIMEOUT)
            .max(Duration::from_nanos(1));
        Limits {
            connected_by: after(start, connect),
            first_byte,
            between_bytes,
            deadline: after(
                start,
                connect
                    .saturating_add(first_byte)
                    .saturating_add(between_bytes),
            ),
        }
    }
}

/// The longest wait we schedule: the guest chooses the timeouts, and an `Instant` plus
/// an arbitrary `Duration` can overflow.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// `start + d`, `d` capped at [`MAX_WAIT`].
fn after(start: Instant, d: Duration) -> Instant {
    start + d.min(MAX_WAIT)
}

async fn send(
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
    tls: Arc<rustls::ClientConfig>,
) -> wasmtime_wasi_http::Result<(http::Response<WasiBody>, BoxFuture<Result<(), HttpError>>)> {
    let limits = Limits::new(&options, Instant::now());
    let uri = request.uri().clone();
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });

    let tcp = connect(&host, port, limits.connected_by).await?;
    // The request line carries only path and query (no proxy form).
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let response = if use_tls {
        let stream = tls_handshake(tcp, &host, tls, limits.connected_by).await?;
        exchange(TokioIo::new(stream), request, &limits).await?
    } else {
        exchange(TokioIo::new(tcp), request, &limits).await?
    };
    let response = response.map(|body| {
        TimedBody {
            inner: body,
            timeout: limits.between_bytes,
            sleep: None,
            deadline: Box::pin(tokio::time::sleep_until(limits.deadline)),
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) }) as BoxFuture<_>))
}

/// TCP to `host:port` (a name or a bare IP address) by `by`.
async fn connect(host: &str, port: u16, by: Instant) -> Result<TcpStream, HttpError> {
    match tokio::time::timeout_at(by, TcpStream::connect((host, port))).await {
        Err(_) => Err(HttpError::ConnectionTimeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(HttpError::ConnectionRefused)
        }
        Ok(Err(e)) => Err(HttpError::Connect(e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// TLS over `tcp` for `host`, done by `by`; an untrusted certificate is reported as
/// such (the component tells it apart from other TLS failures).
async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    tls: Arc<rustls::ClientConfig>,
    by: Instant,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => {
            ServerName::try_from(host.to_string()).map_err(|_| HttpError::HttpRequestUriInvalid)?
        }
    };
    let connector = tokio_rustls::TlsConnector::from(tls);
    match tokio::time::timeout_at(by, connector.connect(name, tcp)).await {
        Err(_) => Err(HttpError::ConnectionTimeout),
        Ok(Err(e)) => {
            let cert_problem = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            Err(if cert_problem {
                HttpError::TlsCertificateError
            } else {
                HttpError::Tls(e)
            })
        }
        Ok(Ok(s)) => Ok(s),
    }
}

/// The HTTP/1 handshake (by `connected_by`), then the request and the response head
/// (within `first_byte`, and by the overall deadline).
async fn exchange<S>(
    io: TokioIo<S>,
    request: http::Request<WasiBody>,
    limits: &Limits,
) -> wasmtime_wasi_http::Result<http::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = tokio::time::timeout_at(
        limits.connected_by,
        hyper::client::conn::http1::handshake(io),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection task lives until the body is read or dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let head_by = after(Instant::now(), limits.first_byte).min(limits.deadline);
    tokio::time::timeout_at(head_by, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)
}

/// A response body that fails with a timeout when no frame arrives within `timeout`,
/// or when it is still waiting for one at the exchange's overall `deadline`.
struct TimedBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(HttpError::from)))
            }
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
                }
                let timeout = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::testkit::faultserver::{Fault, FaultServer};
    use http_body_util::Empty;

    const MS: Duration = Duration::from_millis(1);

    /// One GET of `url` through the host's `send_request` hook with these timeouts
    /// (connect, first byte, between bytes): how it ended, when, and how many body
    /// bytes came.
    async fn exchange_with(
        url: &str,
        timeouts: [Duration; 3],
    ) -> (Result<(), HttpError>, Duration, usize) {
        let request = http::Request::get(url)
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let options = RequestOptions {
            connect_timeout: Some(timeouts[0]),
            first_byte_timeout: Some(timeouts[1]),
            between_bytes_timeout: Some(timeouts[2]),
        };
        let mut hooks = Hooks {
            tls: tls_config(&[]).unwrap(),
            allowed: true,
            phases: None,
        };
        let started = Instant::now();
        let sent = hooks.send_request(request, Some(options), Box::new(async { Ok(()) }));
        let mut bytes = 0;
        let result = async {
            let (response, _io) = Box::into_pin(sent).await?;
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    bytes += data.len();
                }
            }
            Ok(())
        }
        .await;
        (result, started.elapsed(), bytes)
    }

    #[tokio::test]
    async fn a_drip_fed_body_ends_at_the_overall_deadline() {
        // One byte every 50 ms: the 200 ms between-bytes timer never fires. The overall
        // deadline is connect + first byte + between bytes = 600 ms from the start; the
        // test allows 600 ms to 1.2 s (and gives up at 5 s: before the overall deadline
        // existed, the exchange never ended).
        let server = FaultServer::start(vec![Fault::Drip(50 * MS)])
            .await
            .unwrap();
        let ended = tokio::time::timeout(
            Duration::from_secs(5),
            exchange_with(&server.token_url(), [200 * MS, 200 * MS, 200 * MS]),
        )
        .await;
        let (result, elapsed, bytes) = ended.expect("the exchange ends by itself");
        assert!(
            matches!(result, Err(HttpError::ConnectionReadTimeout)),
            "{result:?}"
        );
        assert!(bytes >= 3, "the body did flow ({bytes} bytes)");
        assert!(
            elapsed >= 600 * MS && elapsed < 1200 * MS,
            "ended after {elapsed:?}"
        );
    }
}
