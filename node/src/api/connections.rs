//! How the API's TCP connections are accepted: at most so many open at once per client address,
//! with timeouts on the TLS handshake, on request headers and on idle keep-alive, so a few
//! slow or greedy clients cannot hold every socket and task of the node.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::auth::throttle::address_key;
use crate::config::{ApiSection, ProxyNet};

/// Seconds a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts open connections per client address and refuses those beyond the cap. Trusted
/// proxies are not capped: every client behind them shares their address.
#[derive(Clone)]
pub struct PerAddressCap {
    open: Arc<Mutex<HashMap<String, usize>>>,
    max_per_address: usize,
    trusted: Arc<[ProxyNet]>,
}

impl PerAddressCap {
    pub fn new(max_per_address: usize, trusted: &[ProxyNet]) -> Self {
        Self { open: Arc::default(), max_per_address: max_per_address.max(1), trusted: trusted.into() }
    }

    fn admit(&self, ip: IpAddr) -> Option<OpenConnection> {
        if self.trusted.iter().any(|net| net.contains(&ip)) {
            return Some(OpenConnection { key: None, open: self.open.clone() });
        }
        let key = address_key(&ip.to_string());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(OpenConnection { key: Some(key), open: self.open.clone() })
    }
}

/// One admitted connection; dropping it frees its place.
struct OpenConnection {
    key: Option<String>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let Some(key) = &self.key else { return };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                open.remove(key);
            }
        }
    }
}

/// A TCP stream that holds its place in the per-address count for as long as it lives.
pub struct CountedStream {
    inner: TcpStream,
    _place: OpenConnection,
}

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S> Accept<TcpStream, S> for PerAddressCap {
    type Stream = CountedStream;
    type Service = S;
    type Future = std::future::Ready<io::Result<(CountedStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let admitted = stream.peer_addr().and_then(|peer| {
            let place = self
                .admit(peer.ip())
                .ok_or_else(|| io::Error::other(format!("{} has too many open connections", peer.ip())))?;
            // Small API answers go out at once rather than waiting for Nagle's timer.
            stream.set_nodelay(true)?;
            Ok(CountedStream { inner: stream, _place: place })
        });
        std::future::ready(admitted.map(|stream| (stream, service)))
    }
}

/// The API's HTTPS server, with the connection cap and every timeout in place.
pub fn server(
    api: &ApiSection,
    tls: RustlsConfig,
    cap: PerAddressCap,
) -> axum_server::Server<std::net::SocketAddr, RustlsAcceptor<PerAddressCap>> {
    let header_timeout = Duration::from_secs(api.header_read_timeout_secs.max(1));
    let acceptor = RustlsAcceptor::new(tls).handshake_timeout(TLS_HANDSHAKE_TIMEOUT).acceptor(cap);
    let mut server = axum_server::bind(api.listen)
        .acceptor(acceptor)
        .first_request_timeout(header_timeout)
        .accept_error_handler(|peer, error| tracing::debug!(?peer, %error, "API connection refused or failed"));
    let builder = server.http_builder();
    // HTTP/1: the header timer also runs while a keep-alive connection waits for its next
    // request, so it bounds idle connections too.
    builder.http1().header_read_timeout(header_timeout).max_headers(100);
    // HTTP/2: a peer that stops answering pings is dropped; streams per connection are capped.
    builder
        .http2()
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(64);
    server
}
