//! Outbound HTTP for the component's `wasi:http` calls: plain TCP or TLS with the
//! webpki roots plus any CA the user trusts (`--ca-cert`), with the request options'
//! connect, first-byte and between-bytes timeouts.

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
        let tls = self.tls.clone();
        Box::new(async move { send(request, options.unwrap_or_default(), tls).await })
    }
}

async fn send(
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
    tls: Arc<rustls::ClientConfig>,
) -> wasmtime_wasi_http::Result<(http::Response<WasiBody>, BoxFuture<Result<(), HttpError>>)> {
    let uri = request.uri().clone();
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
    let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(DEFAULT_TIMEOUT)
        .max(Duration::from_nanos(1));

    let tcp = connect(&host, port, connect_timeout).await?;
    // The request line carries only path and query (no proxy form).
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let response = if use_tls {
        let stream = tls_handshake(tcp, &host, tls, connect_timeout).await?;
        exchange(
            TokioIo::new(stream),
            request,
            connect_timeout,
            first_byte_timeout,
        )
        .await?
    } else {
        exchange(
            TokioIo::new(tcp),
            request,
            connect_timeout,
            first_byte_timeout,
        )
        .await?
    };
    let response = response.map(|body| {
        TimedBody {
            inner: body,
            timeout: between_bytes,
            sleep: None,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) }) as BoxFuture<_>))
}

/// TCP to `host:port` (a name or a bare IP address) within `timeout`.
async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, HttpError> {
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => Err(HttpError::ConnectionTimeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(HttpError::ConnectionRefused)
        }
        Ok(Err(e)) => Err(HttpError::Connect(e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// TLS over `tcp` for `host`, within `timeout`; an untrusted certificate is reported
/// as such (the component tells it apart from other TLS failures).
async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => {
            ServerName::try_from(host.to_string()).map_err(|_| HttpError::HttpRequestUriInvalid)?
        }
    };
    let connector = tokio_rustls::TlsConnector::from(tls);
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
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

async fn exchange<S>(
    io: TokioIo<S>,
    request: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
) -> wasmtime_wasi_http::Result<http::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(io))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection task lives until the body is read or dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)
}

/// A response body that fails with a timeout when no frame arrives within `timeout`.
struct TimedBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
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
