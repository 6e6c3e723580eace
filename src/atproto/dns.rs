//! The one DNS stack: a caching hickory resolver, built once per [`super::AtprotoClient`] (so once
//! per process), asked both for the `_atproto.<handle>` TXT records and for the addresses the
//! SSRF-guarded HTTP client connects to (its `GuardedResolver` filters them afterwards).
//!
//! The cache is bounded in entries ([`DNS_CACHE_ENTRIES`]) and in time ([`DNS_MAX_TTL`],
//! [`DNS_MAX_NEGATIVE_TTL`]); records expire with their own TTL when that is shorter. A cached
//! address is checked by the guard on every use like a fresh one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::TokioAsyncResolver;

/// Most answers kept (one per name and record type; least recently used out first).
pub const DNS_CACHE_ENTRIES: usize = 4096;
/// Longest an answer is kept, whatever its TTL says.
pub const DNS_MAX_TTL: Duration = Duration::from_secs(300);
/// Longest "no such name / no such record" is kept: someone who has just published their
/// `_atproto` record waits at most this long.
pub const DNS_MAX_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Time allowed for one query to one name server.
pub const DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A shared, caching resolver. Cheap to clone (the cache is shared by every clone).
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioAsyncResolver>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

impl Dns {
    /// The system's name servers and search rules (`/etc/resolv.conf`, the hosts file); hickory's
    /// defaults when the system configuration cannot be read.
    pub fn system() -> Self {
        let (config, opts) = hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the system DNS configuration: using hickory's default name servers");
            (ResolverConfig::default(), ResolverOpts::default())
        });
        Self::build(config, opts)
    }

    /// Only `server`, over plain UDP/TCP (local test networks).
    pub fn with_server(server: SocketAddr) -> Self {
        let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        Self::build(ResolverConfig::from_parts(None, vec![], servers), ResolverOpts::default())
    }

    fn build(config: ResolverConfig, mut opts: ResolverOpts) -> Self {
        opts.timeout = DNS_QUERY_TIMEOUT;
        opts.cache_size = DNS_CACHE_ENTRIES;
        opts.positive_max_ttl = Some(DNS_MAX_TTL);
        opts.negative_max_ttl = Some(DNS_MAX_NEGATIVE_TTL);
        // Both families, as the system resolver answers: the guard judges every address.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        Self { resolver: Arc::new(TokioAsyncResolver::tokio(config, opts)) }
    }

    /// The addresses of `host`: IPv4 first, then IPv6 (the connector tries the other family
    /// when the first fails).
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let mut ips: Vec<IpAddr> = self.resolver.lookup_ip(host).await?.iter().collect();
        ips.sort_by_key(IpAddr::is_ipv6);
        Ok(ips)
    }

    /// The TXT records of `name`, each record's character-strings joined; `None` when the name
    /// has no TXT record.
    pub async fn txt(&self, name: &str) -> Result<Option<Vec<Vec<u8>>>, ResolveError> {
        match self.resolver.txt_lookup(name).await {
            Ok(lookup) => Ok(Some(lookup.iter().map(|txt| txt.iter().flat_map(|b| b.iter().copied()).collect()).collect())),
            Err(e) if matches!(e.kind(), ResolveErrorKind::NoRecordsFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A fake name server for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod testing {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use hickory_resolver::proto::{
        op::{Message, MessageType, ResponseCode},
        rr::{
            rdata::{A, SOA, TXT},
            Name, RData, Record, RecordType,
        },
    };

    /// A one-zone DNS responder on 127.0.0.1, answering from `records` (name with its trailing
    /// dot, values): a value spelled as an IPv4 address answers A queries, the others TXT
    /// queries; empty answers carry an SOA (60 s), as real servers' do. Also returns how many
    /// queries it has received.
    pub async fn dns_server(records: Vec<(&'static str, Vec<&'static str>)>) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else { return };
                let Ok(query) = Message::from_vec(&buf[..len]) else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut response = Message::new();
                response.set_id(query.id()).set_message_type(MessageType::Response).set_recursion_available(true);
                response.add_queries(query.queries().to_vec());
                let mut found = false;
                for q in query.queries() {
                    let name = q.name().to_ascii().to_lowercase();
                    for (record_name, values) in &records {
                        if name != *record_name {
                            continue;
                        }
                        found = true;
                        let ips: Vec<Ipv4Addr> = values.iter().filter_map(|v| v.parse().ok()).collect();
                        let rdata = match q.query_type() {
                            RecordType::A if !ips.is_empty() => ips.iter().map(|ip| RData::A(A(*ip))).collect(),
                            RecordType::TXT if ips.is_empty() => vec![RData::TXT(TXT::new(values.iter().map(|v| v.to_string()).collect()))],
                            _ => vec![],
                        };
                        for rdata in rdata {
                            response.add_answer(Record::from_rdata(q.name().clone(), 60, rdata));
                        }
                    }
                }
                if !found {
                    response.set_response_code(ResponseCode::NXDomain);
                }
                if response.answers().is_empty() {
                    let zone = Name::from_ascii("example.com.").unwrap();
                    let soa = SOA::new(zone.clone(), zone.clone(), 1, 60, 60, 60, 60);
                    response.add_name_server(Record::from_rdata(zone, 60, RData::SOA(soa)));
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
            }
        });
        (addr, queries)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::testing::dns_server;
    use super::*;

    #[tokio::test]
    async fn answers_are_cached() {
        let (server, queries) = dns_server(vec![
            ("_atproto.alice.example.com.", vec!["did=did:plc:z72i7hdynmk6r22z27h6tvur"]),
            ("pds.example.com.", vec!["8.8.8.8"]),
        ])
        .await;
        let dns = Dns::with_server(server);
        let first = dns.txt("_atproto.alice.example.com.").await.unwrap().unwrap();
        assert_eq!(first, vec![b"did=did:plc:z72i7hdynmk6r22z27h6tvur".to_vec()]);
        let asked = queries.load(Ordering::SeqCst);
        // A clone shares the cache: no new query.
        assert_eq!(dns.clone().txt("_atproto.alice.example.com.").await.unwrap().unwrap(), first);
        assert_eq!(queries.load(Ordering::SeqCst), asked);

        assert_eq!(dns.lookup_ip("pds.example.com.").await.unwrap(), vec![IpAddr::from([8, 8, 8, 8])]);
        let asked = queries.load(Ordering::SeqCst);
        assert_eq!(dns.lookup_ip("pds.example.com.").await.unwrap(), vec![IpAddr::from([8, 8, 8, 8])]);
        assert_eq!(queries.load(Ordering::SeqCst), asked);

        // No record is an answer too (kept at most DNS_MAX_NEGATIVE_TTL).
        assert_eq!(dns.txt("_atproto.nobody.example.com.").await.unwrap(), None);
        let asked = queries.load(Ordering::SeqCst);
        assert_eq!(dns.txt("_atproto.nobody.example.com.").await.unwrap(), None);
        assert_eq!(queries.load(Ordering::SeqCst), asked);
    }

    #[tokio::test]
    async fn localhost_needs_no_name_server() {
        // RFC 6761: answered by the resolver itself, whatever the network.
        let dns = Dns::with_server("127.0.0.1:9".parse().unwrap());
        let ips = dns.lookup_ip("localhost").await.unwrap();
        assert!(!ips.is_empty() && ips.iter().all(|ip| ip.is_loopback()), "{ips:?}");
    }
}
