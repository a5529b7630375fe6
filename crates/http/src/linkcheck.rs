//! The link check (Mailpit's `GET /api/v1/message/{ID}/link-check`): asks every http and
//! https link of a message whether it answers, and reports each status.
//!
//! The server, not the reader's browser, makes these requests, to URLs taken from mail anyone
//! may send: a request-forgery risk. So the check is off unless configured, and even then
//! links whose host resolves to a loopback, private, link-local or otherwise internal address
//! are not requested (they answer 451, as in Mailpit) unless that is allowed too. Each hop of a
//! redirect is checked the same way, a whole link has one timeout, and a fixed number of
//! requests are in flight across the server.
//!
//! Like Mailpit it asks with `HEAD`; unlike Mailpit, a server that refuses `HEAD` (405 or 501)
//! is asked again with `GET`, whose body is never read. This module owns these outbound
//! requests and nothing else: it reads no store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use url::{Host, Position, Url};

/// Default seconds one link may take, redirects included (Mailpit's 10 s).
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Most link requests in flight at once, across all checks (Mailpit runs 5 per check).
pub const MAX_IN_FLIGHT: usize = 5;
/// Most links one check requests; a message with more gets the first ones checked.
pub const MAX_LINKS: usize = 200;
/// Most redirects followed for one link (Mailpit's 3).
pub const MAX_REDIRECTS: usize = 3;
/// The status Mailpit reports for a link to an internal address it did not request.
const BLOCKED_STATUS: u16 = 451;

/// How the check behaves, from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkCheckConfig {
    /// How long one link may take, redirects included.
    pub timeout: Duration,
    /// Request links to internal addresses too (loopback, private networks, link-local).
    pub private_addresses: bool,
}

/// One checked link, as Mailpit reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Link {
    /// The link as found in the message.
    #[serde(rename = "URL")]
    pub url: String,
    /// The HTTP status, 0 when none came (the reason is in `status`).
    pub status_code: u16,
    /// The status's reason phrase, or why there is no status.
    pub status: String,
}

impl Link {
    /// Mailpit counts a status of 400 or more, or none at all, as an error.
    pub fn is_error(&self) -> bool {
        self.status_code == 0 || self.status_code >= 400
    }
}

/// Why a link has no status.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("invalid URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
    #[error("not an http or https URL")]
    Scheme,
    #[error("no such host")]
    NoSuchHost,
    #[error("Blocked private/reserved address")]
    Blocked,
    #[error("{0}")]
    Connect(std::io::ErrorKind),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("timed out")]
    Timeout,
}

/// Makes the requests of every link check; one per server.
pub struct LinkChecker {
    config: LinkCheckConfig,
    in_flight: Semaphore,
    tls: TlsConnector,
}

impl std::fmt::Debug for LinkChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkChecker").field("config", &self.config).finish_non_exhaustive()
    }
}

impl LinkChecker {
    /// A checker trusting the webpki roots, with the `ring` provider.
    pub fn new(config: LinkCheckConfig) -> Result<Self, rustls::Error> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        Self::with_roots(config, roots)
    }

    /// A checker trusting `roots` (tests trust their own certificate).
    fn with_roots(
        config: LinkCheckConfig,
        roots: rustls::RootCertStore,
    ) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(LinkChecker {
            config,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            tls: TlsConnector::from(Arc::new(tls)),
        })
    }

    /// Checks the first [`MAX_LINKS`] of `urls`, in order; with `follow`, redirects are
    /// followed and the last answer counts.
    pub async fn check_all(&self, urls: Vec<String>, follow: bool) -> Vec<Link> {
        futures_util::stream::iter(urls.into_iter().take(MAX_LINKS))
            .map(|url| self.check(url, follow))
            .buffered(MAX_IN_FLIGHT)
            .collect()
            .await
    }

    /// One link, within the timeout once its turn has come.
    async fn check(&self, url: String, follow: bool) -> Link {
        // The semaphore is never closed, so acquiring fails only if it were.
        let _permit = self.in_flight.acquire().await.ok();
        let outcome = tokio::time::timeout(self.config.timeout, self.status_of(&url, follow))
            .await
            .unwrap_or(Err(CheckError::Timeout));
        match outcome {
            Ok(code) => Link {
                url,
                status_code: code.as_u16(),
                status: code.canonical_reason().unwrap_or_default().to_string(),
            },
            Err(CheckError::Blocked) => {
                Link { url, status_code: BLOCKED_STATUS, status: CheckError::Blocked.to_string() }
            }
            Err(error) => Link { url, status_code: 0, status: error.to_string() },
        }
    }

    /// The status of `url`, following up to [`MAX_REDIRECTS`] redirects when asked.
    async fn status_of(&self, url: &str, follow: bool) -> Result<StatusCode, CheckError> {
        let mut current = Url::parse(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let (status, location) = self.head_or_get(&current).await?;
            match location.filter(|_| follow && status.is_redirection()) {
                Some(location) => current = current.join(&location)?,
                None => return Ok(status),
            }
        }
        Err(CheckError::TooManyRedirects)
    }

    /// `HEAD`, and `GET` when the server refuses `HEAD`.
    async fn head_or_get(&self, url: &Url) -> Result<(StatusCode, Option<String>), CheckError> {
        let answer = self.request(Method::HEAD, url).await?;
        if matches!(answer.0, StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED) {
            return self.request(Method::GET, url).await;
        }
        Ok(answer)
    }

    /// One request on a new connection: the status and the `Location`.
    async fn request(
        &self,
        method: Method,
        url: &Url,
    ) -> Result<(StatusCode, Option<String>), CheckError> {
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(CheckError::Scheme),
        };
        let host = url.host().ok_or(CheckError::Scheme)?;
        let port = url.port_or_known_default().ok_or(CheckError::Scheme)?;
        let tcp = self.connect(&host, port).await?;
        let request = Request::builder()
            .method(method)
            .uri(&url[Position::BeforePath..Position::AfterQuery])
            .header(header::HOST, &url[Position::BeforeHost..Position::BeforePath])
            .header(header::USER_AGENT, concat!("Tern/", env!("CARGO_PKG_VERSION")))
            .header(header::ACCEPT, "*/*")
            .body(Empty::<Bytes>::new())
            .map_err(|_| CheckError::Scheme)?;
        if !https {
            return send(tcp, request).await;
        }
        let name = match host {
            Host::Domain(domain) => ServerName::try_from(domain.to_string())
                .map_err(|e| CheckError::Tls(e.to_string()))?,
            Host::Ipv4(ip) => ServerName::from(IpAddr::V4(ip)),
            Host::Ipv6(ip) => ServerName::from(IpAddr::V6(ip)),
        };
        let tls = self.tls.connect(name, tcp).await.map_err(|e| CheckError::Tls(e.to_string()))?;
        send(tls, request).await
    }

    /// Resolves `host` and connects to the first address that answers; refuses internal
    /// addresses unless allowed (any one of them, so a name cannot mix one in).
    async fn connect(&self, host: &Host<&str>, port: u16) -> Result<TcpStream, CheckError> {
        let addresses: Vec<SocketAddr> = match host {
            Host::Domain(domain) => tokio::net::lookup_host((*domain, port))
                .await
                .map_err(|_| CheckError::NoSuchHost)?
                .collect(),
            Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
            Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
        };
        if addresses.is_empty() {
            return Err(CheckError::NoSuchHost);
        }
        if !self.config.private_addresses && addresses.iter().any(|a| tern_dns::is_internal(a.ip()))
        {
            tracing::warn!(%host, "link check: not requesting a link to an internal address");
            return Err(CheckError::Blocked);
        }
        let mut last = std::io::ErrorKind::NotFound;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e.kind(),
            }
        }
        Err(CheckError::Connect(last))
    }
}

/// Sends `request` over `stream` (HTTP/1.1) and returns the answer's status and `Location`;
/// the body is never read, and the connection closes when this returns.
async fn send<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Option<String>), CheckError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let answer = sender.send_request(request).await;
    driver.abort();
    let response = answer?;
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    Ok((response.status(), location))
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers one HTTP/1.1 request on `stream` by its request line: `HEAD /no-head` gets 405
    /// (and `GET` 200), `/moved` redirects to `/ok`, `/loop` to itself, `/missing` is 404,
    /// `/slow` never answers, anything else is 200.
    async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin) {
        // The whole head, so that closing never resets the connection.
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buffer).to_string();
        let line = head.lines().next().unwrap_or_default().to_string();
        let status = match line.split(' ').take(2).collect::<Vec<_>>()[..] {
            ["HEAD", "/no-head"] => "405 Method Not Allowed",
            [_, "/moved"] => "301 Moved Permanently\r\nLocation: /ok",
            [_, "/loop"] => "302 Found\r\nLocation: /loop",
            [_, "/missing"] => "404 Not Found",
            [_, "/slow"] => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            _ => "200 OK",
        };
        let answer =
            format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    /// A plain-HTTP site on loopback answering as [`answer`] does; returns its address.
    async fn site() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream));
            }
        });
        address
    }

    fn checker(private_addresses: bool) -> LinkChecker {
        LinkChecker::new(LinkCheckConfig { timeout: Duration::from_millis(500), private_addresses })
            .expect("checker")
    }

    fn statuses(links: &[Link]) -> Vec<(u16, &str)> {
        links.iter().map(|l| (l.status_code, l.status.as_str())).collect()
    }

    #[tokio::test]
    async fn statuses_come_from_head_and_from_get_when_head_is_refused() {
        let site = site().await;
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let refused = format!("http://{}/", closed.local_addr().expect("address"));
        drop(closed);
        let urls = ["/ok", "/missing", "/no-head", "/moved", "/slow"]
            .iter()
            .map(|path| format!("http://{site}{path}"))
            .chain([refused, "ftp://example.com/".into(), "http://no-such-host.invalid/".into()])
            .collect();
        let links = checker(true).check_all(urls, false).await;
        assert_eq!(
            statuses(&links),
            [
                (200, "OK"),
                (404, "Not Found"),
                (200, "OK"),
                (301, "Moved Permanently"),
                (0, "timed out"),
                (0, "connection refused"),
                (0, "not an http or https URL"),
                (0, "no such host"),
            ]
        );
        let errors: Vec<bool> = links.iter().map(Link::is_error).collect();
        assert_eq!(errors, [false, true, false, false, true, true, true, true]);
    }

    #[tokio::test]
    async fn redirects_are_followed_only_when_asked_and_only_so_far() {
        let site = site().await;
        let urls = vec![format!("http://{site}/moved"), format!("http://{site}/loop")];
        let links = checker(true).check_all(urls, true).await;
        assert_eq!(statuses(&links), [(200, "OK"), (0, "too many redirects")]);
    }

    #[tokio::test]
    async fn https_links_are_checked_over_tls_and_an_unknown_issuer_is_reported() {
        let material = tern_tls::TlsMaterial::self_signed("localhost").expect("certificate");
        let server = tern_tls::build_server_config(&material).expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        answer(tls).await;
                    }
                });
            }
        });
        let urls = vec![
            format!("https://localhost:{port}/ok"),
            format!("https://localhost:{port}/missing"),
        ];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(material.cert_chain()[0].clone()).expect("trust anchor");
        let config = LinkCheckConfig { timeout: Duration::from_secs(5), private_addresses: true };
        let trusting = LinkChecker::with_roots(config, roots).expect("checker");
        let links = trusting.check_all(urls.clone(), false).await;
        assert_eq!(statuses(&links), [(200, "OK"), (404, "Not Found")]);
        // With the public roots only, the self-signed certificate is refused and said to be.
        let links = checker(true).check_all(urls, false).await;
        assert_eq!(links[0].status_code, 0);
        assert!(links[0].status.starts_with("TLS: invalid peer certificate"), "{links:?}");
    }

    #[tokio::test]
    async fn internal_addresses_are_not_requested_unless_allowed() {
        let site = site().await;
        let links = checker(false).check_all(vec![format!("http://{site}/ok")], false).await;
        assert_eq!(statuses(&links), [(451, "Blocked private/reserved address")]);
        assert!(links[0].is_error());
        // `localhost` resolves to loopback: the name does not get it through.
        let named = format!("http://localhost:{}/ok", site.port());
        let links = checker(false).check_all(vec![named.clone()], false).await;
        assert_eq!(links[0].status_code, 451);
        let links = checker(true).check_all(vec![named], false).await;
        assert_eq!(statuses(&links), [(200, "OK")]);
    }
}
