//! The core error for a `wasi:http` `error-code`, for both WASI 0.2 and 0.3 bindings.

/// `transport_error` and `error_code_name` for a `wasi:http` `error-code` type: the 0.2
/// and 0.3 variants have the same cases, but each binding generates its own type.
#[doc(hidden)]
#[macro_export]
macro_rules! error_code_mapping {
    ($code:path) => {
        /// The core error for a host's `error-code` (its text carries no secret).
        fn transport_error(code: $code) -> $crate::CoreError {
            type C = $code;
            match code {
                C::ConnectionTimeout
                | C::ConnectionReadTimeout
                | C::ConnectionWriteTimeout
                | C::HttpResponseTimeout => $crate::CoreError::Timeout,
                C::DnsError(_) => $crate::CoreError::Transport("DNS lookup failed".into()),
                C::ConnectionRefused => $crate::CoreError::Transport("connection refused".into()),
                C::TlsCertificateError => {
                    $crate::CoreError::Transport("TLS certificate not trusted".into())
                }
                C::HttpProtocolError => $crate::CoreError::Transport(
                    "HTTP protocol error (the connection closed without a complete response)"
                        .into(),
                ),
                C::HttpRequestDenied => $crate::CoreError::Transport(
                    "the host denied the outbound request (allowed hosts?)".into(),
                ),
                C::InternalError(Some(message)) => $crate::CoreError::Transport(format!(
                    "internal-error: {}",
                    $crate::sanitize(&message, 200)
                )),
                other => $crate::CoreError::Transport(error_code_name(&other).into()),
            }
        }

        /// The `wasi:http` case name of `code` (its payload left out): what the host reported,
        /// without the formatting machinery a derived `Debug` would bring into the component.
        fn error_code_name(code: &$code) -> &'static str {
            type C = $code;
            match code {
                C::DnsTimeout => "DNS-timeout",
                C::DnsError(_) => "DNS-error",
                C::DestinationNotFound => "destination-not-found",
                C::DestinationUnavailable => "destination-unavailable",
                C::DestinationIpProhibited => "destination-IP-prohibited",
                C::DestinationIpUnroutable => "destination-IP-unroutable",
                C::ConnectionRefused => "connection-refused",
                C::ConnectionTerminated => "connection-terminated",
                C::ConnectionTimeout => "connection-timeout",
                C::ConnectionReadTimeout => "connection-read-timeout",
                C::ConnectionWriteTimeout => "connection-write-timeout",
                C::ConnectionLimitReached => "connection-limit-reached",
                C::TlsProtocolError => "TLS-protocol-error",
                C::TlsCertificateError => "TLS-certificate-error",
                C::TlsAlertReceived(_) => "TLS-alert-received",
                C::HttpRequestDenied => "HTTP-request-denied",
                C::HttpRequestLengthRequired => "HTTP-request-length-required",
                C::HttpRequestBodySize(_) => "HTTP-request-body-size",
                C::HttpRequestMethodInvalid => "HTTP-request-method-invalid",
                C::HttpRequestUriInvalid => "HTTP-request-URI-invalid",
                C::HttpRequestUriTooLong => "HTTP-request-URI-too-long",
                C::HttpRequestHeaderSectionSize(_) => "HTTP-request-header-section-size",
                C::HttpRequestHeaderSize(_) => "HTTP-request-header-size",
                C::HttpRequestTrailerSectionSize(_) => "HTTP-request-trailer-section-size",
                C::HttpRequestTrailerSize(_) => "HTTP-request-trailer-size",
                C::HttpResponseIncomplete => "HTTP-response-incomplete",
                C::HttpResponseHeaderSectionSize(_) => "HTTP-response-header-section-size",
                C::HttpResponseHeaderSize(_) => "HTTP-response-header-size",
                C::HttpResponseBodySize(_) => "HTTP-response-body-size",
                C::HttpResponseTrailerSectionSize(_) => "HTTP-response-trailer-section-size",
                C::HttpResponseTrailerSize(_) => "HTTP-response-trailer-size",
                C::HttpResponseTransferCoding(_) => "HTTP-response-transfer-coding",
                C::HttpResponseContentCoding(_) => "HTTP-response-content-coding",
                C::HttpResponseTimeout => "HTTP-response-timeout",
                C::HttpUpgradeFailed => "HTTP-upgrade-failed",
                C::HttpProtocolError => "HTTP-protocol-error",
                C::LoopDetected => "loop-detected",
                C::ConfigurationError => "configuration-error",
                C::InternalError(_) => "internal-error",
            }
        }
    };
}
