//! Addresses and hosts: which IP addresses are public, and which hosts are this machine.
//!
//! One answer for the whole server: the SSRF guard (`atproto::http`), the ATProto client's
//! loopback mode and the checks of URLs an admin or a tenant app registers ask here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    match o {
        [127, ..] => AddrClass::Loopback,
        [0, ..] => AddrClass::Forbidden("unspecified/\"this network\" address"),
        [10, ..] => AddrClass::Forbidden("private address"),
        [172, b, ..] if (16..=31).contains(&b) => AddrClass::Forbidden("private address"),
        [192, 168, ..] => AddrClass::Forbidden("private address"),
        [169, 254, ..] => AddrClass::Forbidden("link-local address"),
        [100, b, ..] if (64..=127).contains(&b) => AddrClass::Forbidden("shared (CGNAT) address"),
        [192, 0, 0, _] => AddrClass::Forbidden("IETF protocol assignment address"),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => AddrClass::Forbidden("documentation address"),
        [198, b, ..] if b == 18 || b == 19 => AddrClass::Forbidden("benchmarking address"),
        [192, 88, 99, _] => AddrClass::Forbidden("6to4 relay anycast address"),
        [a, ..] if (224..=239).contains(&a) => AddrClass::Forbidden("multicast address"),
        [a, ..] if a >= 240 => AddrClass::Forbidden("reserved or broadcast address"),
        _ => AddrClass::Global,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if ip == Ipv6Addr::LOCALHOST {
        return AddrClass::Loopback;
    }
    if ip == Ipv6Addr::UNSPECIFIED {
        return AddrClass::Forbidden("unspecified address");
    }
    let s = ip.segments();
    // ::ffff:a.b.c.d (IPv4-mapped)
    if let Some(v4) = ip.to_ipv4_mapped() {
        return match classify_v4(v4) {
            AddrClass::Global => AddrClass::Global,
            AddrClass::Loopback => AddrClass::Forbidden("IPv4-mapped loopback address"),
            AddrClass::Forbidden(r) => AddrClass::Forbidden(r),
        };
    }
    // ::a.b.c.d (deprecated IPv4-compatible)
    if s[0..6].iter().all(|&x| x == 0) {
        return AddrClass::Forbidden("IPv4-compatible IPv6 address");
    }
    // ::ffff:0:a.b.c.d (RFC 2765 SIIT, IPv4-translated): translated inside someone's network.
    if s[0..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0 {
        return AddrClass::Forbidden("IPv4-translated (SIIT) address");
    }
    // 64:ff9b:1::/48 (RFC 8215 local-use NAT64): the operator's own translator decides what is behind it.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return AddrClass::Forbidden("local-use NAT64 address");
    }
    // 64:ff9b::/96 NAT64 and 2002::/16 6to4 embed an IPv4 address.
    let embedded = if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        Some(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
    } else {
        None
    };
    if let Some(v4) = embedded {
        return match classify_v4(v4) {
            AddrClass::Global => AddrClass::Global,
            _ => AddrClass::Forbidden("IPv6 address embedding a non-public IPv4 address"),
        };
    }
    match s[0] {
        x if x & 0xfe00 == 0xfc00 => AddrClass::Forbidden("unique-local address"),
        x if x & 0xffc0 == 0xfe80 => AddrClass::Forbidden("link-local address"),
        x if x & 0xffc0 == 0xfec0 => AddrClass::Forbidden("site-local address"),
        x if x & 0xff00 == 0xff00 => AddrClass::Forbidden("multicast address"),
        0x2001 if s[1] == 0x0db8 => AddrClass::Forbidden("documentation address"),
        0x2001 if s[1] == 0 => AddrClass::Forbidden("Teredo address"),
        0x2001 if s[1] == 2 && s[2] == 0 => AddrClass::Forbidden("benchmarking address"),
        0x3fff if s[1] < 0x1000 => AddrClass::Forbidden("documentation address"),
        0x0100 if s[1..4].iter().all(|&x| x == 0) => AddrClass::Forbidden("discard-only address"),
        _ => AddrClass::Global,
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
