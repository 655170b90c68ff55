//! An API that moves large bodies without holding them: `POST /upload` reads the
//! request body as it streams and answers how many bytes came and whether they followed
//! [`pattern`]; `GET /download?bytes=N` streams N bytes of the pattern in 64 KiB chunks.
//! Each request's method, path and `Authorization` are recorded (the token is never
//! echoed in an answer). For tests that show bodies stream through a component.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The byte at `offset` of every body this server sends or expects.
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// `len` bytes of [`pattern`].
pub fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern).collect()
}

const CHUNK: usize = 64 * 1024;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    /// Request body bytes read.
    pub bytes: u64,
}

/// The server. Dropping it stops accepting connections.
pub struct BulkApi {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BulkApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BulkApi {
    /// Start on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<BulkApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = super::serve_http1(listener, seen.clone(), handle);
        Ok(BulkApi { addr, seen, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in the order they ended.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .expect("valid response")
}

async fn handle(
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // Read the body frame by frame, checking each byte against the pattern.
    let mut body = req.into_body();
    let (mut bytes, mut follows) = (0u64, true);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            follows &= data.iter().zip(bytes..).all(|(b, i)| *b == pattern(i));
            bytes += data.len() as u64;
        }
    }
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        authorization,
        bytes,
    });
    Ok(match (method.as_str(), path.as_str()) {
        ("POST" | "PUT", "/upload") => text(
            200,
            serde_json::json!({"bytes": bytes, "pattern": follows}).to_string(),
        ),
        ("GET", "/download") => {
            let Some(len) = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "bytes")
                .and_then(|(_, v)| v.parse::<u64>().ok())
            else {
                return Ok(text(400, r#"{"error":"bytes=N missing"}"#.into()));
            };
            download(len)
        }
        _ => text(404, r#"{"error":"not found"}"#.into()),
    })
}

/// `len` bytes of the pattern, made one chunk at a time as the client reads.
fn download(len: u64) -> Response<Body> {
    let chunks = futures::stream::unfold(0u64, move |at| async move {
        (at < len).then(|| {
            let end = (at + CHUNK as u64).min(len);
            let chunk: Vec<u8> = (at..end).map(pattern).collect();
            (Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), end)
        })
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/octet-stream")
        .header("content-length", len.to_string())
        .body(StreamBody::new(chunks).map_err(|e| match e {}).boxed())
        .expect("valid response")
}
