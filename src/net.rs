//! Addresses and hosts: which IP addresses are public, and which hosts are this machine.
//!
//! One answer for the whole server: the SSRF guard (`atproto::http`), the ATProto client's
//! loopback mode and the checks of URLs an admin or a tenant app registers ask here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// How an address is treated by the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Publicly routable: allowed.
    Global,
    /// Loopback: allowed only with `allow_insecure_loopback`.
    Loopback,
    /// Never allowed; the reason names the range.
    Forbidden(&'static str),
}

/// Classify an IP address. IPv4-mapped / NAT64 / 6to4 IPv6 addresses are judged by the IPv4
/// address they embed; local-use NAT64 (`64:ff9b:1::/48`) and SIIT (`::ffff:0:0:0/96`) are refused.
pub fn classify_ip(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// A refusal, with the name of its range.
const fn refused(reason: &'static str) -> AddrClass {
    AddrClass::Forbidden(reason)
}

const fn net4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix_len)
}

const fn net6(segments: [u16; 8], prefix_len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix_len)
}

const PRIVATE: AddrClass = refused("private address");
const DOCUMENTATION: AddrClass = refused("documentation address");

/// The IPv4 ranges that are not public (IANA special-purpose address registry). Every other
/// address is [`AddrClass::Global`].
const V4_RANGES: &[(Ipv4Net, AddrClass)] = &[
    (net4(127, 0, 0, 0, 8), AddrClass::Loopback),
    (net4(0, 0, 0, 0, 8), refused("unspecified/\"this network\" address")),
    (net4(10, 0, 0, 0, 8), PRIVATE),
    (net4(172, 16, 0, 0, 12), PRIVATE),
    (net4(192, 168, 0, 0, 16), PRIVATE),
    (net4(169, 254, 0, 0, 16), refused("link-local address")),
    (net4(100, 64, 0, 0, 10), refused("shared (CGNAT) address")),
    (net4(192, 0, 0, 0, 24), refused("IETF protocol assignment address")),
    (net4(192, 0, 2, 0, 24), DOCUMENTATION),
    (net4(198, 51, 100, 0, 24), DOCUMENTATION),
    (net4(203, 0, 113, 0, 24), DOCUMENTATION),
    (net4(198, 18, 0, 0, 15), refused("benchmarking address")),
    (net4(192, 88, 99, 0, 24), refused("6to4 relay anycast address")),
    (net4(224, 0, 0, 0, 4), refused("multicast address")),
    (net4(240, 0, 0, 0, 4), refused("reserved or broadcast address")),
];

/// How an IPv6 range is judged.
#[derive(Debug, Clone, Copy)]
enum V6Rule {
    /// The whole range is of this class.
    Is(AddrClass),
    /// The range carries an IPv4 address in the 32 bits from bit `at` on, and is judged by it.
    Embeds { at: u8, how: Embedding },
}

#[derive(Debug, Clone, Copy)]
enum Embedding {
    /// `::ffff:a.b.c.d` is the IPv4 address itself: its class and reason stand, except that
    /// mapped loopback is refused (the loopback setting is for `127.0.0.0/8` and `::1` only).
    Mapped,
    /// NAT64 and 6to4 reach the IPv4 address through a translator: public, or refused.
    Translated,
}

/// The IPv6 ranges that are not simply public. The most specific range containing an address
/// decides; every other address is [`AddrClass::Global`].
const V6_RANGES: &[(Ipv6Net, V6Rule)] = &[
    (net6([0, 0, 0, 0, 0, 0, 0, 1], 128), V6Rule::Is(AddrClass::Loopback)),
    (net6([0, 0, 0, 0, 0, 0, 0, 0], 128), V6Rule::Is(refused("unspecified address"))),
    // ::ffff:a.b.c.d (IPv4-mapped)
    (net6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96), V6Rule::Embeds { at: 96, how: Embedding::Mapped }),
    // ::a.b.c.d (deprecated IPv4-compatible)
    (net6([0, 0, 0, 0, 0, 0, 0, 0], 96), V6Rule::Is(refused("IPv4-compatible IPv6 address"))),
    // ::ffff:0:a.b.c.d (RFC 2765 SIIT, IPv4-translated): translated inside someone's network.
    (net6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), V6Rule::Is(refused("IPv4-translated (SIIT) address"))),
    // 64:ff9b:1::/48 (RFC 8215 local-use NAT64): the operator's own translator decides what is behind it.
    (net6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), V6Rule::Is(refused("local-use NAT64 address"))),
    // 64:ff9b::/96 (RFC 6052 well-known NAT64 prefix)
    (net6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), V6Rule::Embeds { at: 96, how: Embedding::Translated }),
    // 2002::/16 (6to4)
    (net6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), V6Rule::Embeds { at: 16, how: Embedding::Translated }),
    (net6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), V6Rule::Is(refused("unique-local address"))),
    (net6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), V6Rule::Is(refused("link-local address"))),
    (net6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), V6Rule::Is(refused("site-local address"))),
    (net6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), V6Rule::Is(refused("multicast address"))),
    (net6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), V6Rule::Is(DOCUMENTATION)),
    (net6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), V6Rule::Is(DOCUMENTATION)),
    // 2001::/32 (Teredo): the IPv4 address it embeds is obfuscated; refused whole.
    (net6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), V6Rule::Is(refused("Teredo address"))),
    (net6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), V6Rule::Is(refused("benchmarking address"))),
    (net6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64), V6Rule::Is(refused("discard-only address"))),
];

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    V4_RANGES.iter().filter(|(net, _)| net.contains(&ip)).max_by_key(|(net, _)| net.prefix_len()).map_or(AddrClass::Global, |(_, c)| *c)
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let rule = V6_RANGES.iter().filter(|(net, _)| net.contains(&ip)).max_by_key(|(net, _)| net.prefix_len()).map(|(_, r)| *r);
    match rule {
        None => AddrClass::Global,
        Some(V6Rule::Is(class)) => class,
        Some(V6Rule::Embeds { at, how }) => {
            // The 32 bits from bit `at` on (truncating drops the prefix bits above them).
            let embedded = Ipv4Addr::from((u128::from(ip) >> (96 - u32::from(at))) as u32);
            match (how, classify_v4(embedded)) {
                (_, AddrClass::Global) => AddrClass::Global,
                (Embedding::Mapped, AddrClass::Loopback) => refused("IPv4-mapped loopback address"),
                (Embedding::Mapped, class) => class,
                (Embedding::Translated, _) => refused("IPv6 address embedding a non-public IPv4 address"),
            }
        }
    }
}

/// `localhost` or a name under it (RFC 6761: they all resolve to loopback); case and a trailing
/// dot do not matter.
pub fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// Does the URL name this machine: a loopback name ([`is_loopback_name`]) or a loopback IP
/// address (`127.0.0.0/8`, `::1`; IPv4-mapped loopback is not, see [`classify_ip`])?
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => is_loopback_name(d),
        Some(Host::Ipv4(ip)) => classify_ip(IpAddr::V4(ip)) == AddrClass::Loopback,
        Some(Host::Ipv6(ip)) => classify_ip(IpAddr::V6(ip)) == AddrClass::Loopback,
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn range_tables_are_unambiguous() {
        // IPv4 ranges never overlap; IPv6 ranges nest at most (the most specific decides), so no
        // network may appear twice.
        for (i, (a, _)) in V4_RANGES.iter().enumerate() {
            for (b, _) in &V4_RANGES[i + 1..] {
                assert!(!a.contains(b) && !b.contains(a), "{a} and {b} overlap");
            }
        }
        for (i, (a, _)) in V6_RANGES.iter().enumerate() {
            for (b, _) in &V6_RANGES[i + 1..] {
                assert_ne!(a, b, "{a} twice");
            }
        }
    }

    #[test]
    fn embedded_ipv4_is_unwrapped() {
        let class = |s: &str| classify_ip(s.parse().unwrap());
        assert_eq!(class("::ffff:8.8.8.8"), AddrClass::Global);
        assert_eq!(class("::ffff:10.0.0.1"), AddrClass::Forbidden("private address"));
        assert_eq!(class("::ffff:127.0.0.1"), AddrClass::Forbidden("IPv4-mapped loopback address"));
        assert_eq!(class("64:ff9b::808:808"), AddrClass::Global);
        assert_eq!(class("64:ff9b::a00:1"), AddrClass::Forbidden("IPv6 address embedding a non-public IPv4 address"));
        assert_eq!(class("2002:808:808::1"), AddrClass::Global);
        assert_eq!(class("2002:c0a8:1::1"), AddrClass::Forbidden("IPv6 address embedding a non-public IPv4 address"));
        assert_eq!(class("::1"), AddrClass::Loopback);
        assert_eq!(class("::"), AddrClass::Forbidden("unspecified address"));
        assert_eq!(class("::8.8.8.8"), AddrClass::Forbidden("IPv4-compatible IPv6 address"));
    }

    #[test]
    fn loopback_names() {
        for name in ["localhost", "LOCALHOST", "localhost.", "app.localhost", "a.b.Localhost."] {
            assert!(is_loopback_name(name), "{name}");
        }
        for name in ["localhost.example.com", "notlocalhost", "local", "127.0.0.1.nip.io", ""] {
            assert!(!is_loopback_name(name), "{name}");
        }
    }

    #[test]
    fn loopback_hosts() {
        let yes = |u: &str| is_loopback_host(&Url::parse(u).unwrap());
        for u in ["http://localhost:8080", "http://127.0.0.1/", "http://127.9.8.7/", "http://[::1]:3000/", "https://app.localhost/"] {
            assert!(yes(u), "{u}");
        }
        for u in ["http://10.0.0.1/", "http://[::ffff:127.0.0.1]/", "https://sso.example.com/", "http://[::]/", "data:text/plain,x"] {
            assert!(!yes(u), "{u}");
        }
    }
}
