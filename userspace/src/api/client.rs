//! A small HTTP/1.0 client for `xdhcpd ctl` and the tests: one request per connection over
//! the control socket (UNIX) or TCP, the answer read to the end (HTTP/1.0: the server closes).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

/// Where the API is.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    /// A TCP address and the bearer token to send (if any).
    Tcp(SocketAddr, Option<String>),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a, _) => write!(f, "http://{a}"),
        }
    }
}

/// An answer: status code and body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "answer is not JSON (status {}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` of a JSON error answer, else the body as text.
    pub fn reason(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// Most bytes of an answer read (a page of 10,000 leases is a few MB).
const MAX_ANSWER: u64 = 256 << 20;

/// Sends one request and reads the whole answer.
pub fn call(
    ep: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<Answer> {
    call_with_timeout(ep, method, path, body, Duration::from_secs(30))
}

/// [`call`], waiting up to `timeout` for the answer (a bulk registration import of millions
/// takes seconds).
pub fn call_with_timeout(
    ep: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let timeout = Some(timeout);
    let (mut stream, token): (Box<dyn ReadWrite>, Option<&str>) = match ep {
        Endpoint::Unix(p) => {
            let s = UnixStream::connect(p).with_context(|| {
                format!(
                    "connecting to control socket {} (is xdhcpd running?)",
                    p.display()
                )
            })?;
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(timeout)?;
            (Box::new(s), None)
        }
        Endpoint::Tcp(a, t) => {
            let s = TcpStream::connect_timeout(a, Duration::from_secs(5))
                .with_context(|| format!("connecting to the API at {a}"))?;
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(timeout)?;
            (Box::new(s), t.as_deref())
        }
    };
    let body = body.unwrap_or(b"");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: xdhcpd\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .with_context(|| format!("sending {method} {path} to {ep}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path} from {ep}"))?;
    parse_answer(&raw).with_context(|| format!("answer to {method} {path} from {ep}"))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no complete HTTP header ({} bytes)", raw.len());
    };
    let head = std::str::from_utf8(&raw[..end]).context("HTTP header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let (Some(proto), Some(code)) = (parts.next(), parts.next()) else {
        bail!("bad status line {status_line:?}");
    };
    if !proto.starts_with("HTTP/1.") {
        bail!("bad status line {status_line:?}");
    }
    let status: u16 = code
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_type = None;
    let mut len = None;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-type" => content_type = Some(v.to_string()),
                "content-length" => len = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(n) = len {
        if body.len() < n {
            bail!("answer cut short: {} of {n} body bytes", body.len());
        }
        body.truncate(n);
    }
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            bail!("bad chunked body");
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .context("bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = b.get(..size).context("chunk cut short")?;
        out.extend_from_slice(chunk);
        b = b.get(size + 2..).context("chunk cut short")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_client_parses_plain_and_chunked_answers() {
        let a = parse_answer(b"HTTP/1.0 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{\"error\":\"nope\"}\nextra").unwrap();
        assert_eq!(a.status, 404);
        assert_eq!(a.reason(), "nope");
        let a = parse_answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(a.body, b"abcde");
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\ncontent-length: 10\r\n\r\nabc").is_err());
    }
}
