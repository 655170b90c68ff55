//! The OAuth protocol, without I/O: the client's registration (`client`), the token
//! request (`request`) with client authentication (`client_auth`), judging the token
//! endpoint's answer (`response`) and the issuer's metadata (`metadata`).

pub(crate) mod client;
pub mod client_auth;
pub mod dpop;
pub mod metadata;
mod p256_pkcs8;
pub(crate) mod request;
pub mod response;
