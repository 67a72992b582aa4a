//! Who the client is: the peer address, or, only when the peer is a trusted proxy, the address
//! the proxies forwarded. Resolved once per request by the request-id middleware and kept in the
//! request's extensions as [`ClientIp`], where the log span, the per-IP rate limits and the
//! security events read it.

use actix_web::{HttpMessage, HttpRequest};
use ipnet::IpNet;
use std::net::IpAddr;

/// The client's address (the real one behind trusted proxies), resolved once per request.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The address resolved for `req`, if it is known.
    pub fn of(req: &HttpRequest) -> Option<IpAddr> {
        req.extensions().get::<Self>().and_then(|ip| ip.0)
    }

    /// The client's address: the peer, unless the peer is a trusted proxy, in which case the
    /// right-most forwarded hop that is not a trusted proxy. A client cannot choose its own key
    /// by sending `X-Forwarded-For` to a server that does not trust it.
    pub fn resolve(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
        if !is_trusted(&peer) {
            return Some(peer);
        }
        let chain = forwarded_chain(req);
        Some(
            chain
                .iter()
                .rev()
                .find(|ip| !is_trusted(ip))
                .or(chain.first())
                .copied()
                .unwrap_or(peer),
        )
    }
}

/// The addresses in `X-Forwarded-For` and `Forwarded: for=`, nearest proxy last.
fn forwarded_chain(req: &HttpRequest) -> Vec<IpAddr> {
    let headers = req.headers();
    let xff = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse().ok());
    let forwarded = headers
        .get_all("forwarded")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            name.eq_ignore_ascii_case("for").then_some(value)
        })
        .filter_map(|value| {
            let value = value.trim_matches('"');
            let host = match value.strip_prefix('[') {
                Some(v6) => v6.split(']').next()?,
                None => value.split(':').next()?,
            };
            host.parse().ok()
        });
    xff.chain(forwarded).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str, xff: Option<&str>) -> HttpRequest {
        let mut request = TestRequest::default().peer_addr(format!("{peer}:5000").parse().unwrap());
        if let Some(xff) = xff {
            request = request.insert_header(("x-forwarded-for", xff));
        }
        request.to_http_request()
    }

    fn nets(cidrs: &[&str]) -> Vec<IpNet> {
        cidrs.iter().map(|cidr| cidr.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let req = request("203.0.113.9", Some("1.2.3.4"));
        assert_eq!(ClientIp::resolve(&req, &[]), "203.0.113.9".parse().ok());
        assert_eq!(
            ClientIp::resolve(&req, &nets(&["10.0.0.0/8"])),
            "203.0.113.9".parse().ok()
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the first hop; the proxy appended the real one.
        let req = request("10.0.0.5", Some("6.6.6.6, 198.51.100.7, 10.0.0.2"));
        assert_eq!(
            ClientIp::resolve(&req, &trusted),
            "198.51.100.7".parse().ok()
        );
        let forwarded = TestRequest::default()
            .peer_addr("10.0.0.5:5000".parse().unwrap())
            .insert_header(("forwarded", "for=\"[2001:db8::1]:4711\";proto=https"))
            .to_http_request();
        assert_eq!(
            ClientIp::resolve(&forwarded, &trusted),
            "2001:db8::1".parse().ok()
        );
        let no_header = request("10.0.0.5", None);
        assert_eq!(
            ClientIp::resolve(&no_header, &trusted),
            "10.0.0.5".parse().ok()
        );
    }
}
