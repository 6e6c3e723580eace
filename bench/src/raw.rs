//! A lean keep-alive HTTP/1.1 client for every scenario.
//!
//! At thousands to tens of thousands of requests per second on two cores, reqwest's
//! per-request work in the driver took a large share of the CPU the servers needed (two thirds
//! on discovery, about a tenth on the token requests) and so capped what could be measured.
//! This writes each request in one buffer and parses the response with `httparse`, so the
//! server, not the driver, is what runs out of CPU. Every server is driven the same way.
use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use url::Url;

/// What the flows need from a response.
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection per origin (a worker talks to one provider).
pub struct Http {
    timeout: Duration,
    conns: Vec<(String, Conn)>,
}

impl Http {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, conns: Vec::with_capacity(1) }
    }

    /// One request; `headers` are added to Host, User-Agent and (with a body) Content-Length.
    pub async fn send(&mut self, method: &str, url: &Url, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
        if url.scheme() != "http" {
            return Err(format!("{url}: the lean client speaks plain http only"));
        }
        let host = url.host_str().ok_or_else(|| format!("{url}: no host"))?;
        let authority = format!("{host}:{}", url.port_or_known_default().unwrap_or(80));
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let mut request = Vec::with_capacity(256 + body.len());
        request.extend_from_slice(method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(target.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(authority.as_bytes());
        request.extend_from_slice(b"\r\nUser-Agent: atsso-bench\r\n");
        for (name, value) in headers {
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() || method == "POST" {
            request.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        let index = match self.conns.iter().position(|(a, _)| *a == authority) {
            Some(index) => index,
            None => {
                self.conns.push((authority.clone(), Conn::new(authority)));
                self.conns.len() - 1
            }
        };
        let conn = &mut self.conns[index].1;
        match tokio::time::timeout(self.timeout, conn.exchange(&request)).await {
            Ok(result) => result,
            Err(_) => {
                conn.stream = None;
                Err(format!("{method} {url}: timed out"))
            }
        }
    }
}

/// A pre-built GET repeated on one connection (discovery, JWKS).
pub struct RawGet {
    conn: Conn,
    request: Vec<u8>,
}

impl RawGet {
    pub fn new(url: &str) -> Result<Self, String> {
        let parsed = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        if parsed.scheme() != "http" {
            return Err(format!("{url}: the lean GET speaks plain http only"));
        }
        let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let mut target = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            target.push('?');
            target.push_str(query);
        }
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nUser-Agent: atsso-bench\r\n\r\n")
                .into_bytes();
        Ok(Self { conn: Conn::new(format!("{host}:{port}")), request })
    }

    /// One GET; Ok(body length) on a 2xx with a non-empty body.
    pub async fn get(&mut self) -> Result<usize, String> {
        let response = self.conn.exchange(&self.request).await?;
        if !(200..300).contains(&response.status) {
            let body = response.text();
            return Err(format!("GET: HTTP {}: {}", response.status, body.chars().take(200).collect::<String>()));
        }
        if response.body.is_empty() {
            return Err("GET: empty body".into());
        }
        Ok(response.body.len())
    }
}

struct Conn {
    authority: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

enum Body {
    Length(usize),
    Chunked,
}

impl Conn {
    fn new(authority: String) -> Self {
        Self { authority, stream: None, buf: Vec::with_capacity(16 * 1024) }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response, String> {
        let result = self.exchange_once(request).await;
        if result.is_err() {
            // Start the next request on a fresh connection.
            self.stream = None;
        }
        result
    }

    async fn exchange_once(&mut self, request: &[u8]) -> Result<Response, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.authority).await.map_err(|e| format!("connect {}: {e}", self.authority))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().ok_or("no connection")?;
        stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        // Read until the head is complete.
        let (mut response, head_len, body, close) = loop {
            read_more(stream, &mut self.buf).await?;
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf).map_err(|e| format!("bad response head: {e}"))? {
                httparse::Status::Partial => continue,
                httparse::Status::Complete(head_len) => {
                    let mut response =
                        Response { status: parsed.code.unwrap_or(0), location: None, set_cookies: Vec::new(), body: Vec::new() };
                    let mut body_len = None;
                    let mut chunked = false;
                    let mut close = false;
                    for header in parsed.headers.iter() {
                        let name = header.name;
                        if name.eq_ignore_ascii_case("content-length") {
                            let text = std::str::from_utf8(header.value).map_err(|_| "bad content-length")?;
                            body_len = Some(text.trim().parse::<usize>().map_err(|_| "bad content-length")?);
                        } else if name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = header.value.eq_ignore_ascii_case(b"chunked");
                        } else if name.eq_ignore_ascii_case("connection") {
                            close = header.value.eq_ignore_ascii_case(b"close");
                        } else if name.eq_ignore_ascii_case("location") {
                            response.location = Some(String::from_utf8_lossy(header.value).into_owned());
                        } else if name.eq_ignore_ascii_case("set-cookie") {
                            response.set_cookies.push(String::from_utf8_lossy(header.value).into_owned());
                        }
                    }
                    let body = match (body_len, chunked) {
                        (_, true) => Body::Chunked,
                        (Some(len), false) => Body::Length(len),
                        // No framing on a response without a body (e.g. a bare 302): empty.
                        (None, false) if (300..400).contains(&response.status) || response.status == 204 => Body::Length(0),
                        (None, false) => return Err("response with neither content-length nor chunked".into()),
                    };
                    break (response, head_len, body, close);
                }
            }
        };
        match body {
            Body::Length(len) => {
                while self.buf.len() < head_len + len {
                    read_more(stream, &mut self.buf).await?;
                }
                response.body.extend_from_slice(&self.buf[head_len..head_len + len]);
            }
            Body::Chunked => read_chunked(stream, &mut self.buf, head_len, &mut response.body).await?,
        }
        if close {
            self.stream = None;
        }
        Ok(response)
    }
}

/// Reads a chunked body that starts at `start` into `body` (no trailers).
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, start: usize, body: &mut Vec<u8>) -> Result<(), String> {
    let mut at = start;
    loop {
        let (consumed, size) = loop {
            match httparse::parse_chunk_size(&buf[at..]).map_err(|_| "bad chunk size")? {
                httparse::Status::Complete(found) => break found,
                httparse::Status::Partial => read_more(stream, buf).await?,
            }
        };
        at += consumed;
        let size = usize::try_from(size).map_err(|_| "chunk too large")?;
        // The chunk's data (none for the last chunk) and its CRLF.
        while buf.len() < at + size + 2 {
            read_more(stream, buf).await?;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
        if size == 0 {
            return Ok(());
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed mid-response".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };
    use url::Url;

    use super::Http;

    /// Reads one request (head and Content-Length body) from the stream.
    async fn read_request(stream: &mut TcpStream) -> String {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed the connection");
            bytes.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.parse::<usize>().unwrap()))
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    return text;
                }
            }
        }
    }

    /// A server that accepts ONE connection and answers each request with the next of `responses`
    /// (each written in the given pieces), returning the requests it saw.
    async fn one_connection_server(responses: Vec<Vec<&'static str>>) -> (Url, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let handle = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for pieces in responses {
                seen.push(read_request(&mut stream).await);
                for piece in pieces {
                    stream.write_all(piece.as_bytes()).await.unwrap();
                    stream.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            seen
        });
        (url, handle)
    }

    #[tokio::test]
    async fn keeps_the_connection_and_reads_length_chunked_and_redirect_responses() {
        let (base, server) = one_connection_server(vec![
            vec!["HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello", " world"],
            vec!["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"", "\r\n3\r\n:1}\r\n0\r\n\r\n"],
            vec!["HTTP/1.1 302 Found\r\nLocation: /next?x=1\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"],
            vec!["HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno"],
        ])
        .await;
        let mut http = Http::new(Duration::from_secs(5));
        let first = http.send("GET", &base.join("a").unwrap(), &[("Accept", "application/json")], b"").await.unwrap();
        assert_eq!((first.status, first.text().as_str()), (200, "hello world"));
        let second = http
            .send("POST", &base.join("token").unwrap(), &[("Content-Type", "application/x-www-form-urlencoded")], b"grant_type=x")
            .await
            .unwrap();
        assert_eq!((second.status, second.text().as_str()), (200, "{\"a\":1}"), "chunks reassembled");
        let third = http.send("GET", &base.join("auth").unwrap(), &[("Cookie", "s=1")], b"").await.unwrap();
        assert_eq!(third.status, 302);
        assert_eq!(third.location.as_deref(), Some("/next?x=1"));
        assert_eq!(third.set_cookies, vec!["a=1; Path=/".to_string(), "b=2".to_string()]);
        assert!(third.body.is_empty());
        let fourth = http.send("GET", &base.join("userinfo").unwrap(), &[], b"").await.unwrap();
        assert_eq!((fourth.status, fourth.text().as_str()), (401, "no"), "a non-2xx answer is returned, not an error");

        // All four went over the one connection the server accepted.
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 4);
        assert!(seen[0].starts_with("GET /a HTTP/1.1\r\n") && seen[0].contains("\r\nAccept: application/json\r\n"));
        assert!(seen[1].starts_with("POST /token HTTP/1.1\r\n"));
        assert!(seen[1].contains("\r\nContent-Length: 12\r\n") && seen[1].ends_with("\r\n\r\ngrant_type=x"), "{}", seen[1]);
        assert!(seen[2].contains("\r\nCookie: s=1\r\n"));
    }

    #[tokio::test]
    async fn connection_close_and_broken_responses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move {
            // First connection: answers with Connection: close, then closes.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx").await.unwrap();
            drop(stream);
            // Second: a body cut short.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await.unwrap();
            drop(stream);
            // Third: fine again.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
        });
        let mut http = Http::new(Duration::from_secs(5));
        let url = base.join("x").unwrap();
        assert_eq!(http.send("GET", &url, &[], b"").await.unwrap().text(), "x");
        let cut = http.send("GET", &url, &[], b"").await.err().unwrap();
        assert!(cut.contains("closed mid-response"), "{cut}");
        assert_eq!(http.send("GET", &url, &[], b"").await.unwrap().text(), "ok", "a fresh connection after an error");
        server.await.unwrap();
        assert!(http.send("GET", &Url::parse("https://example.test/").unwrap(), &[], b"").await.is_err(), "plain http only");
    }
}
