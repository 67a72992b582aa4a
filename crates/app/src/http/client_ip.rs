//! Who the client is: the peer address, or, only when the peer is a trusted proxy, the address
//! that proxy forwarded in the one header it is configured to set. Resolved once per request by
//! the request-id middleware and kept in the request's extensions as [`ClientIp`], where the log
//! span, the per-IP rate limits and the security events read it.

use actix_web::http::header::HeaderMap;
use actix_web::{HttpMessage, HttpRequest};
use ipnet::{IpNet, Ipv6Net};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::settings::{ClientIpHeader, RateLimitSettings};

/// The client of a request: its address and the network its rate limits count under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp {
    /// The address, as logged and audited (IPv4-mapped IPv6 written as IPv4).
    pub address: IpAddr,
    /// What per-IP limits key on: the address itself for IPv4, its network for IPv6, so that a
    /// host rotating through its /64 stays one client.
    pub network: IpNet,
}

impl ClientIp {
    /// The address resolved for `req`, if it is known.
    pub fn of(req: &HttpRequest) -> Option<IpAddr> {
        req.extensions().get::<Self>().map(|ip| ip.address)
    }

    /// The key per-IP rate limits count `req` under.
    pub fn rate_key(req: &HttpRequest) -> String {
        req.extensions().get::<Self>().map_or_else(
            || "ip:unknown".to_owned(),
            |ip| format!("ip:{}", ip.network),
        )
    }

    /// `address`, keyed on its network of `ipv6_prefix` bits when it is IPv6.
    fn new(address: IpAddr, ipv6_prefix: u8) -> Self {
        let network = match address {
            IpAddr::V6(v6) => Ipv6Net::new(v6, ipv6_prefix)
                .map_or(IpNet::from(address), |net| IpNet::V6(net.trunc())),
            IpAddr::V4(_) => IpNet::from(address),
        };
        Self { address, network }
    }
}

/// How client addresses are resolved, from the `rate_limit` settings.
#[derive(Debug, Clone)]
pub struct ClientAddressing {
    trusted: Arc<[IpNet]>,
    header: ClientIpHeader,
    ipv6_prefix: u8,
}

impl ClientAddressing {
    /// Trusts `settings.trusted_proxies` for `settings.client_ip_header` only.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            trusted: settings.trusted_proxies.clone().into(),
            header: settings.client_ip_header,
            ipv6_prefix: settings.ipv6_prefix,
        }
    }

    /// Believes no proxy: every client is its peer address, IPv6 ones keyed on the full address.
    pub fn peer_only() -> Self {
        Self {
            trusted: Arc::new([]),
            header: ClientIpHeader::None,
            ipv6_prefix: 128,
        }
    }

    /// The client of `req`: the peer, unless the peer is a trusted proxy, in which case the
    /// right-most hop of the configured header that is not a trusted proxy. A client cannot
    /// choose its own key by sending a forwarding header to a server that does not trust it,
    /// nor by sending the header that the trusted proxies do not set.
    pub fn resolve(&self, req: &HttpRequest) -> Option<ClientIp> {
        let peer = req.peer_addr()?.ip().to_canonical();
        let address = if self.is_trusted(&peer) {
            self.forwarded_client(req.headers()).unwrap_or(peer)
        } else {
            peer
        };
        Some(ClientIp::new(address, self.ipv6_prefix))
    }

    fn is_trusted(&self, ip: &IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// Walks the hops from the nearest proxy outwards, past trusted proxies, to the first
    /// address that is not one. A hop that is not an address ends the walk: what lies beyond it
    /// was not vouched for, so the client is then the farthest trusted hop seen (if any).
    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let mut farthest_trusted = None;
        for hop in hops(self.header, headers).into_iter().rev() {
            match hop {
                Some(ip) if self.is_trusted(&ip) => farthest_trusted = Some(ip),
                Some(ip) => return Some(ip),
                None => break,
            }
        }
        farthest_trusted
    }
}

/// The hops `header` lists, nearest proxy last; `None` for a hop that names no address.
fn hops(header: ClientIpHeader, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let lines = |name: &str| {
        headers
            .get_all(name)
            .map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
    };
    match header {
        ClientIpHeader::None => Vec::new(),
        ClientIpHeader::XForwardedFor => lines("x-forwarded-for")
            .into_iter()
            .flat_map(|line| split_hops(line, parse_node))
            .collect(),
        ClientIpHeader::Forwarded => lines("forwarded")
            .into_iter()
            .flat_map(|line| split_hops(line, forwarded_for))
            .collect(),
    }
}

/// The comma-separated hops of one header line, each read by `parse`; an unreadable line is one
/// unreadable hop.
fn split_hops(line: Option<&str>, parse: impl Fn(&str) -> Option<IpAddr>) -> Vec<Option<IpAddr>> {
    line.map_or_else(|| vec![None], |line| line.split(',').map(parse).collect())
}

/// The `for=` node of one `Forwarded` element (`for=...;proto=...;by=...`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| name.eq_ignore_ascii_case("for"))
        .and_then(|(_, node)| parse_node(node))
}

/// An address as proxies write it: bare, quoted, with a port (`1.2.3.4:80`, `[2001:db8::1]:80`),
/// IPv4-mapped IPv6 read as IPv4. `unknown` and obfuscated nodes (`_hidden`) are `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    let ip = if let Ok(ip) = node.parse::<IpAddr>() {
        ip
    } else if let Some(bracketed) = node.strip_prefix('[') {
        bracketed.split_once(']')?.0.parse().ok()?
    } else {
        node.parse::<SocketAddr>().ok()?.ip()
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let peer: IpAddr = peer.parse().unwrap();
        let mut request = TestRequest::default().peer_addr(SocketAddr::new(peer, 5000));
        for header in headers {
            request = request.append_header(*header);
        }
        request.to_http_request()
    }

    fn addressing(trusted: &[&str], header: ClientIpHeader) -> ClientAddressing {
        ClientAddressing {
            trusted: trusted.iter().map(|cidr| cidr.parse().unwrap()).collect(),
            header,
            ipv6_prefix: 64,
        }
    }

    fn client(addressing: &ClientAddressing, req: &HttpRequest) -> IpAddr {
        addressing.resolve(req).unwrap().address
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let req = request("203.0.113.9", &[("x-forwarded-for", "1.2.3.4")]);
        for trusted in [&[][..], &["10.0.0.0/8"]] {
            let addressing = addressing(trusted, ClientIpHeader::XForwardedFor);
            assert_eq!(client(&addressing, &req), ip("203.0.113.9"));
        }
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let xff = addressing(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        // The client forged the first hop; the proxy appended the real one.
        let req = request(
            "10.0.0.5",
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")],
        );
        assert_eq!(client(&xff, &req), ip("198.51.100.7"));
        let forwarded = addressing(&["10.0.0.0/8"], ClientIpHeader::Forwarded);
        let req = request(
            "10.0.0.5",
            &[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")],
        );
        assert_eq!(client(&forwarded, &req), ip("2001:db8::1"));
        assert_eq!(client(&xff, &request("10.0.0.5", &[])), ip("10.0.0.5"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // nginx appended the real client to X-Forwarded-For and passed the forged Forwarded on.
        let req = request(
            "127.0.0.1",
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("forwarded", "for=1.2.3.4"),
            ],
        );
        let xff = addressing(&["127.0.0.1/32"], ClientIpHeader::XForwardedFor);
        assert_eq!(client(&xff, &req), ip("198.51.100.7"));
        let forwarded = addressing(&["127.0.0.1/32"], ClientIpHeader::Forwarded);
        assert_eq!(client(&forwarded, &req), ip("1.2.3.4"));
        let none = addressing(&["127.0.0.1/32"], ClientIpHeader::None);
        assert_eq!(client(&none, &req), ip("127.0.0.1"));
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk() {
        let xff = addressing(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let req = request(
            "10.0.0.5",
            &[("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.2")],
        );
        assert_eq!(client(&xff, &req), ip("10.0.0.2"));
        let forwarded = addressing(&["10.0.0.0/8"], ClientIpHeader::Forwarded);
        let req = request("10.0.0.5", &[("forwarded", "for=1.2.3.4, for=_hidden")]);
        assert_eq!(client(&forwarded, &req), ip("10.0.0.5"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let xff = addressing(&["127.0.0.1/32"], ClientIpHeader::XForwardedFor);
        let req = request("::ffff:127.0.0.1", &[("x-forwarded-for", "::ffff:1.2.3.4")]);
        let resolved = xff.resolve(&req).unwrap();
        assert_eq!(resolved.address, ip("1.2.3.4"));
        assert_eq!(resolved.network, "1.2.3.4/32".parse::<IpNet>().unwrap());
        let direct = xff.resolve(&request("::ffff:203.0.113.9", &[])).unwrap();
        assert_eq!(direct.address, ip("203.0.113.9"));
    }

    #[test]
    fn ipv6_clients_share_a_key_per_network_but_keep_their_address() {
        let xff = addressing(&[], ClientIpHeader::XForwardedFor);
        let one = xff.resolve(&request("2001:db8:1:2::1", &[])).unwrap();
        let other = xff.resolve(&request("2001:db8:1:2:ffff::9", &[])).unwrap();
        let next_net = xff.resolve(&request("2001:db8:1:3::1", &[])).unwrap();
        assert_eq!(one.network, other.network);
        assert_eq!(one.network.to_string(), "2001:db8:1:2::/64");
        assert_ne!(one.network, next_net.network);
        assert_eq!(other.address, ip("2001:db8:1:2:ffff::9"));
        let per_host = ClientAddressing {
            ipv6_prefix: 128,
            ..xff
        };
        let host = per_host.resolve(&request("2001:db8:1:2::1", &[])).unwrap();
        assert_eq!(host.network.to_string(), "2001:db8:1:2::1/128");
    }

    #[test]
    fn forwarded_rotation_through_a_64_keeps_one_rate_key() {
        let xff = addressing(&["127.0.0.1/32"], ClientIpHeader::XForwardedFor);
        let keys: std::collections::HashSet<String> = (1..=30)
            .map(|n| {
                let req = request(
                    "127.0.0.1",
                    &[("x-forwarded-for", &format!("2001:db8::{n:x}"))],
                );
                req.extensions_mut().insert(xff.resolve(&req).unwrap());
                ClientIp::rate_key(&req)
            })
            .collect();
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["ip:2001:db8::/64"]);
        assert_eq!(ClientIp::rate_key(&request("127.0.0.1", &[])), "ip:unknown");
    }
}
