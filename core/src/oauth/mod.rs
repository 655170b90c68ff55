//! The OAuth protocol, without I/O: the client's registration (`client`), the token
//! request (`request`) with client authentication (`client_auth`), judging the token
//! endpoint's answer (`response`), the issuer's metadata (`metadata`) and a Google
//! service account's key file (`service_account`).

#[cfg(feature = "rsa")]
pub(crate) mod certificate;
pub(crate) mod client;
pub mod client_auth;
pub mod dpop;
pub mod metadata;
mod p256_pkcs8;
pub(crate) mod request;
pub mod response;
pub(crate) mod service_account;
