//! What went wrong between the edge and an origin, named once for every place that reports it:
//! `Cache-Status: …; detail=connect-refused`, the access log, and
//! `outpost_origin_errors_total{kind="connect_refused"}`. An operator reading any of them at
//! 3 a.m. should learn the same thing: a refused connection is not a timeout.

use pingora_core::{Error, ErrorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginFault {
    /// Nothing listens at the origin's address (or a firewall rejects us).
    ConnectRefused,
    /// The origin's address did not answer the connection in time.
    ConnectTimeout,
    /// Any other failure to connect: no route, no address, socket errors.
    ConnectFailed,
    /// The TLS handshake with the origin failed: most often its certificate does not verify
    /// (unknown authority, wrong name, expired).
    Tls,
    /// Connected, but the origin did not answer (or take the request) in time.
    Timeout,
    /// The origin closed or reset the connection before its answer was whole.
    Closed,
    /// The origin's answer was not valid HTTP.
    Invalid,
    Other,
}

impl OriginFault {
    pub const ALL: [OriginFault; 8] = [
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::ConnectFailed,
        Self::Tls,
        Self::Timeout,
        Self::Closed,
        Self::Invalid,
        Self::Other,
    ];

    pub fn of(e: &Error) -> Self {
        match e.etype() {
            ErrorType::ConnectRefused => Self::ConnectRefused,
            ErrorType::ConnectTimedout => Self::ConnectTimeout,
            ErrorType::TLSHandshakeFailure
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError => Self::Tls,
            ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::SocketError
            | ErrorType::BindError
            | ErrorType::ConnectProxyFailure => Self::ConnectFailed,
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Self::Timeout,
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
                Self::Closed
            }
            ErrorType::InvalidHTTPHeader => Self::Invalid,
            _ => Self::Other,
        }
    }

    /// Failed before the request reached the origin: another origin may be tried, whatever the
    /// method.
    pub fn before_request(self) -> bool {
        matches!(
            self,
            Self::ConnectRefused | Self::ConnectTimeout | Self::ConnectFailed | Self::Tls
        )
    }

    /// The status a client gets when nothing stored can stand in: 504 when the origin did not
    /// answer in time, or when a stored response existed but could not be used (RFC 9111
    /// §4.2.4, §5.2.2.2); 502 otherwise.
    pub fn status(self, had_stored: bool) -> u16 {
        if had_stored || matches!(self, Self::ConnectTimeout | Self::Timeout) {
            504
        } else {
            502
        }
    }

    /// For `Cache-Status` `detail` and the access log.
    pub fn detail(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect-refused",
            Self::ConnectTimeout => "connect-timeout",
            Self::ConnectFailed => "connect-failed",
            Self::Tls => "origin-tls",
            Self::Timeout => "origin-timeout",
            Self::Closed => "origin-closed",
            Self::Invalid => "origin-invalid",
            Self::Other => "origin-error",
        }
    }

    /// For the `kind` label of `outpost_origin_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::ConnectFailed => "connect_failed",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Invalid => "invalid",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_not_a_timeout() {
        let refused = OriginFault::of(&Error::new(ErrorType::ConnectRefused));
        assert_eq!(refused.detail(), "connect-refused");
        assert_eq!(refused.status(false), 502);
        assert_eq!(refused.status(true), 504, "a stored copy could not be used");
        assert!(refused.before_request());
        let late = OriginFault::of(&Error::new(ErrorType::ReadTimedout));
        assert_eq!((late.detail(), late.status(false)), ("origin-timeout", 504));
        assert!(!late.before_request());
    }
}
