//! Plugging the token interceptor into an app component: the app's
//! `wasi:http/client@0.3.0` import is satisfied by the interceptor's export, which in
//! turn imports the host's client (what `wac plug` does). The result is one component
//! that imports what both need and exports what the app exports.

use anyhow::{Context, bail};
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

/// The interface the interceptor stands in front of.
pub const HTTP_CLIENT: &str = "wasi:http/client@0.3.0";

/// `app` with `interceptor` plugged into its [`HTTP_CLIENT`] import.
pub fn wrap(app: &[u8], interceptor: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let app = Package::from_bytes("app:app", None, app.to_vec(), graph.types_mut())
        .context("reading the app component")?;
    let imports_client = graph.types()[app.ty()]
        .imports
        .keys()
        .any(|name| name.as_str() == HTTP_CLIENT);
    let app = graph.register_package(app)?;
    if !imports_client {
        bail!(
            "the app does not import {HTTP_CLIENT} (a WASIp3 HTTP client); there is nothing to intercept"
        );
    }
    let interceptor = Package::from_bytes(
        "oauth2:token-interceptor",
        None,
        interceptor.to_vec(),
        graph.types_mut(),
    )
    .context("reading the interceptor component")?;
    let interceptor = graph.register_package(interceptor)?;
    wac_graph::plug(&mut graph, vec![interceptor], app)
        .context("plugging the interceptor into the app")?;
    graph
        .encode(EncodeOptions::default())
        .context("encoding the composed component")
}
