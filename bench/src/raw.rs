//! A lean keep-alive HTTP/1.1 GET for the static-document scenarios (discovery, JWKS).
//!
//! At tens of thousands of requests per second on two cores, reqwest's per-request work in the
//! driver took two thirds of the CPU and capped what could be measured; this writes one
//! pre-built request and parses the response with `httparse`, so the server, not the driver,
//! is what runs out of CPU. Every server is driven the same way.
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub struct RawGet {
    addr: String,
    request: Vec<u8>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl RawGet {
    pub fn new(url: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
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
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nUser-Agent: atsso-bench\r\n\r\n"
        )
        .into_bytes();
        Ok(Self { addr: format!("{host}:{port}"), request, stream: None, buf: Vec::with_capacity(16 * 1024) })
    }

    /// One GET; Ok(body length) on a 2xx with a non-empty body.
    pub async fn get(&mut self) -> Result<usize, String> {
        let result = self.exchange().await;
        if result.is_err() {
            // Start the next request on a fresh connection.
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self) -> Result<usize, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr).await.map_err(|e| format!("connect {}: {e}", self.addr))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().ok_or("no connection")?;
        stream.write_all(&self.request).await.map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        // Read until the head is complete.
        let (status, head_len, body, close) = loop {
            read_more(stream, &mut self.buf).await?;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf).map_err(|e| format!("bad response head: {e}"))? {
                httparse::Status::Partial => continue,
                httparse::Status::Complete(head_len) => {
                    let status = response.code.unwrap_or(0);
                    let mut body_len = None;
                    let mut chunked = false;
                    let mut close = false;
                    for header in response.headers.iter() {
                        if header.name.eq_ignore_ascii_case("content-length") {
                            let text = std::str::from_utf8(header.value).map_err(|_| "bad content-length")?;
                            body_len = Some(text.trim().parse::<usize>().map_err(|_| "bad content-length")?);
                        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = header.value.eq_ignore_ascii_case(b"chunked");
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            close = header.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    let body = match (body_len, chunked) {
                        (_, true) => Body::Chunked,
                        (Some(len), false) => Body::Length(len),
                        (None, false) => return Err("response with neither content-length nor chunked".into()),
                    };
                    break (status, head_len, body, close);
                }
            }
        };
        let body_len = match body {
            Body::Length(len) => {
                while self.buf.len() < head_len + len {
                    read_more(stream, &mut self.buf).await?;
                }
                len
            }
            Body::Chunked => read_chunked(stream, &mut self.buf, head_len).await?,
        };
        if close {
            self.stream = None;
        }
        if !(200..300).contains(&status) {
            let body = String::from_utf8_lossy(&self.buf[head_len..]);
            return Err(format!("GET: HTTP {status}: {}", body.chars().take(200).collect::<String>()));
        }
        if body_len == 0 {
            return Err("GET: empty body".into());
        }
        Ok(body_len)
    }
}

enum Body {
    Length(usize),
    Chunked,
}

/// Reads a chunked body that starts at `start`; returns its decoded length (no trailers).
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, start: usize) -> Result<usize, String> {
    let mut at = start;
    let mut total = 0;
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
        at += size + 2;
        total += size;
        if size == 0 {
            return Ok(total);
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
