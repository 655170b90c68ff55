//! The recipes of docs/identity-providers.md, against token endpoints in the test
//! peer that behave as Microsoft Entra ID, Auth0 and Amazon Cognito do for the
//! mistakes the page warns about (`tests/peers/oidc/idp.mjs`): each recipe's
//! configuration gets a token the peer's API takes, and each common mistake gets an
//! error that says what is wrong, in the words the page quotes.

use crate::common::oidc::{OidcPeer, TestPki};
use crate::common::{api_get, send, token};
use token_provider_host::{ProviderError, TokenHost, TokenRequest, describe};

const RSA_2048: &str = include_str!("../fixtures/rsa-2048.pem");

const ENTRA_TENANT: &str = "7f3c2b1a-0d9e-4c8b-a6f5-3e2d1c0b9a87";
const ENTRA_CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const ENTRA_SECRET: &str = "Qx58Q~entra.secret-value_0123456789abcdef";

/// The RSA fixture key's self-signed certificate, as it would be uploaded to the app
/// registration.
fn certificate() -> String {
    let key = rcgen::KeyPair::from_pem(RSA_2048).unwrap();
    rcgen::CertificateParams::new(vec!["orders-service".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
}

fn peer_env(certificate: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ENTRA_CLIENT_ID", ENTRA_CLIENT_ID.into()),
        ("ENTRA_SECRET", ENTRA_SECRET.into()),
        ("ENTRA_CERT", certificate.into()),
        ("AUTH0_CLIENT_ID", "auth0-m2m".into()),
        ("AUTH0_SECRET", "auth0-secret".into()),
        ("AUTH0_AUDIENCE", "https://orders.example.com/".into()),
        ("AUTH0_SCOPES", "read:orders write:orders".into()),
        ("COGNITO_CLIENT_ID", "cognito-app".into()),
        ("COGNITO_SECRET", "cognito-secret".into()),
        ("COGNITO_SCOPES", "orders/read orders/write".into()),
    ]
}

/// A host for `path` on the peer with exactly `config` (besides the peer's own:
/// HTTP allowed when it speaks HTTP, its origin allowed, its CA trusted), no
/// client id or secret unless `config` gives them.
fn host(peer: &OidcPeer, pki: Option<&TestPki>, path: &str, config: &[(&str, &str)]) -> TokenHost {
    let url = format!("{}{path}", peer.base());
    let all = [&[("token_url", url.as_str())], config].concat();
    crate::oidc::make_host(peer, pki, "", "", &all).0
}

/// The error a token request gets, as the CLI and the host print it.
async fn refusal(host: &TokenHost) -> (String, u16) {
    let e = token(host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    let status = match &e {
        ProviderError::Oauth(o) => o.status,
        other => panic!("expected an OAuth error, got {other:?}"),
    };
    (describe(&e), status)
}

/// The token works at the peer's API.
async fn works(peer: &OidcPeer, host: &TokenHost, what: &str) {
    token(host, &TokenRequest::default_request())
        .await
        .unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
    let answer = send(host, &api_get(format!("{}/api/orders", peer.base())))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{what}");
}

fn entra_path() -> String {
    format!("/entra/{ENTRA_TENANT}/oauth2/v2.0/token")
}

/// Entra ID with a certificate credential, over HTTP and TLS: PS256 and the
/// certificate's `x5t#S256` get a token (the RSA build runs: the key is RSA); the
/// same key without `client_certificate` is AADSTS700027 (Entra cannot tell which
/// certificate signed), and a scope without `/.default` is AADSTS1002012 with the
/// scope we asked for.
#[tokio::test]
async fn entra_takes_a_certificate_credential_named_by_its_sha256_thumbprint() {
    let cert = certificate();
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start_with(pki.as_ref(), &peer_env(&cert));
        let recipe = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
            let mut v = vec![
                ("client_id", ENTRA_CLIENT_ID.to_string()),
                ("auth_method", "private_key_jwt".into()),
                ("client_private_key", RSA_2048.into()),
                ("client_assertion_alg", "PS256".into()),
                ("client_certificate", cert.clone()),
                ("scope", "api://orders/.default".into()),
            ];
            for (k, val) in extra {
                v.retain(|(key, _)| key != k);
                if !val.is_empty() {
                    v.push((k, val.to_string()));
                }
            }
            v
        };
        let build = |config: Vec<(&'static str, String)>| {
            let refs: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
            host(&peer, pki.as_ref(), &entra_path(), &refs)
        };
        works(&peer, &build(recipe(&[])), &format!("tls={tls}")).await;
        let (text, status) = refusal(&build(recipe(&[("client_certificate", "")]))).await;
        assert_eq!(status, 401, "{text}");
        // The peer names what the assertion named the key by: here `kid`, absent.
        assert_eq!(
            text,
            "invalid_client (HTTP 401): AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '(none)']"
        );
        let (text, status) = refusal(&build(recipe(&[("scope", "api://orders/read")]))).await;
        assert_eq!(status, 400);
        assert_eq!(
            text,
            r#"invalid_scope (HTTP 400): AADSTS1002012: The provided value for scope api://orders/read is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI). (the request asked for scope "api://orders/read")"#
        );
        // The certificate of another key (here a P-256 one): nothing is sent.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::CertificateParams::new(vec!["other".into()])
            .unwrap()
            .self_signed(&other)
            .unwrap()
            .pem();
        let before = peer.stats(pki.as_ref()).await.0;
        let e = token(
            &build(
                recipe(&[("client_certificate", "")])
                    .into_iter()
                    .chain([("client_certificate", other)])
                    .collect(),
            ),
            &TokenRequest::default_request(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            describe(&e),
            "config: client_certificate: is not client_private_key's certificate: the first certificate in it holds another public key"
        );
        assert_eq!(peer.stats(pki.as_ref()).await.0, before, "nothing sent");
    }
}

/// Entra ID with a client secret, sent in the form as the recipe says: the recipe
/// works; no scope at all is AADSTS900144, and the secret's ID pasted instead of its
/// value is AADSTS7000215, which says so.
#[tokio::test]
async fn entra_with_a_secret_and_its_two_common_mistakes() {
    let peer = OidcPeer::start_with(None, &peer_env(&certificate()));
    let config = |secret: &'static str, scope: &'static str| {
        host(
            &peer,
            None,
            &entra_path(),
            &[
                ("client_id", ENTRA_CLIENT_ID),
                ("client_secret", secret),
                ("auth_method", "client_secret_post"),
                ("scope", scope),
            ],
        )
    };
    works(
        &peer,
        &config(ENTRA_SECRET, "api://orders/.default"),
        "entra secret",
    )
    .await;
    let (text, _) = refusal(&config(ENTRA_SECRET, "")).await;
    assert_eq!(
        text,
        "invalid_request (HTTP 400): AADSTS900144: The request body must contain the following parameter: 'scope'."
    );
    let (text, status) = refusal(&config(
        "0d5b8c1e-6f2a-4e3b-9c7d-8a1b2c3d4e5f",
        "api://orders/.default",
    ))
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        text,
        format!(
            "invalid_client (HTTP 401): AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{ENTRA_CLIENT_ID}'."
        )
    );
    assert!(!text.contains(ENTRA_SECRET), "{text}");
}

/// Auth0: `audience` is the API's identifier, and a client credentials request
/// without it is refused with Auth0's `access_denied`; a scope the application was
/// not granted names that scope. Basic authentication (the default) works as the
/// form does. A token with an audience is sent only to an origin bound to it.
#[tokio::test]
async fn auth0_needs_the_audience_and_names_an_ungranted_scope() {
    let peer = OidcPeer::start_with(None, &peer_env(&certificate()));
    // The API (the peer's, here) is bound to the audience its tokens are for.
    let binding = format!("{}=https://orders.example.com/", peer.base());
    let config = |audience: &'static str, scope: &'static str| {
        host(
            &peer,
            None,
            "/auth0/oauth/token",
            &[
                ("client_id", "auth0-m2m"),
                ("client_secret", "auth0-secret"),
                ("auth_method", "client_secret_post"),
                ("audience", audience),
                ("scope", scope),
                ("origin_audiences", &binding),
            ],
        )
    };
    works(&peer, &config("https://orders.example.com/", ""), "auth0").await;
    works(
        &peer,
        &config("https://orders.example.com/", "read:orders"),
        "auth0 with a scope",
    )
    .await;
    // Without the binding, the token (it has an audience) goes nowhere.
    let unbound = host(
        &peer,
        None,
        "/auth0/oauth/token",
        &[
            ("client_id", "auth0-m2m"),
            ("client_secret", "auth0-secret"),
            ("audience", "https://orders.example.com/"),
        ],
    );
    let e = send(&unbound, &api_get(format!("{}/api/orders", peer.base())))
        .await
        .unwrap_err();
    assert_eq!(
        describe(&e),
        format!(
            "refused: the token's audience `https://orders.example.com/` is not bound to {} (origin_audiences)",
            peer.base()
        )
    );
    let (text, status) = refusal(&config("", "")).await;
    assert_eq!(
        (text.as_str(), status),
        (
            "access_denied (HTTP 403): No audience parameter was provided, and no default audience has been configured",
            403
        )
    );
    // The identifier without its trailing slash is another API, which Auth0 does not
    // know.
    let (text, _) = refusal(&config("https://orders.example.com", "")).await;
    assert_eq!(
        text,
        "access_denied (HTTP 403): Service not found: https://orders.example.com"
    );
    let (text, _) = refusal(&config("https://orders.example.com/", "read:orders admin")).await;
    assert_eq!(
        text,
        "access_denied (HTTP 403): Client has not been granted scopes: admin"
    );
}

/// Cognito: scopes are `resource-server-identifier/scope-name`; a bare scope name
/// gets Cognito's bare `invalid_scope`, to which the component adds what it asked
/// for. The recipe (Basic, the full scope names) works, and so does no scope at all
/// (Cognito then grants every scope the app client has).
#[tokio::test]
async fn cognito_scopes_need_the_resource_server_prefix() {
    let peer = OidcPeer::start_with(None, &peer_env(&certificate()));
    let config = |scope: &'static str| {
        host(
            &peer,
            None,
            "/cognito/oauth2/token",
            &[
                ("client_id", "cognito-app"),
                ("client_secret", "cognito-secret"),
                ("scope", scope),
            ],
        )
    };
    works(&peer, &config("orders/read"), "cognito").await;
    works(&peer, &config(""), "cognito without a scope").await;
    let (text, status) = refusal(&config("read")).await;
    assert_eq!(
        (text.as_str(), status),
        (
            r#"invalid_scope (HTTP 400): the request asked for scope "read""#,
            400
        )
    );
    let wrong_secret = host(
        &peer,
        None,
        "/cognito/oauth2/token",
        &[("client_id", "cognito-app"), ("client_secret", "not-it")],
    );
    assert_eq!(
        refusal(&wrong_secret).await,
        ("invalid_client (HTTP 400)".to_string(), 400)
    );
    let refusals = peer.stats_json(None).await["idp_refusals"].clone();
    assert_eq!(
        refusals,
        serde_json::json!(["cognito: invalid_scope: ", "cognito: invalid_client: "]),
        "{refusals}"
    );
}

/// The default build reads no certificate: set there, `client_certificate` is a
/// `config` error that names the build that does (the host picks that build by itself
/// when the key is set, `components::needs_rsa`).
#[tokio::test]
async fn the_default_build_names_the_rsa_build_for_a_certificate() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["orders-service".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let host = TokenHost::builder()
        .component(token_provider_host::components::EMBEDDED_COMPONENT.to_vec())
        .config("token_url", "https://login.example/token")
        .config("client_id", "c")
        .config("auth_method", "private_key_jwt")
        .config("client_private_key", key.serialize_pem())
        .config("client_certificate", cert)
        .build()
        .unwrap();
    match token(&host, &TokenRequest::default_request()).await {
        Err(e @ ProviderError::Config(_)) => assert_eq!(
            describe(&e),
            "config: client_certificate: is read by the RSA build only (token_provider_rsa.wasm): certificate credentials are RSA keys"
        ),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
