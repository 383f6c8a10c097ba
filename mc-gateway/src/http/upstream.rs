//! Upstream connections of the HTTP stage: the shared pools ([`Upstreams`], hyper's client per
//! endpoint and protocol) and the dedicated HTTP/1 connections of one downstream connection
//! ([`Dedicated`]). Every connection to a target backend is opened by [`Backends`].
//!
//! An HTTP/1 downstream connection carries one request at a time, so it gets its own upstream
//! connection per backend endpoint, opened on the thread that serves it and reused for as long
//! as the resolver keeps picking that endpoint: no shared pool, no lock shared with other
//! connections, no task hop to check a connection out. Each request is still resolved first,
//! so an endpoint that left the ready set is never picked again; its connection is dropped when
//! a new endpoint needs its slot or when the downstream connection closes.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::backend::{BackendStream, Backends};
use crate::transport::resolve::SharedResolver;
use crate::{Error, Result};

/// Connects to one fixed backend address, whatever the request URI says (the URI keeps the
/// target authority, so `Host` and `:authority` stay the service name).
#[derive(Debug, Clone)]
pub(crate) struct EndpointConnector {
    addr: SocketAddr,
    backends: Backends,
}

impl tower_service::Service<Uri> for EndpointConnector {
    type Response = TokioIo<BackendStream>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (addr, backends) = (self.addr, self.backends.clone());
        Box::pin(async move { Ok(TokioIo::new(backends.connect(addr).await?)) })
    }
}

type UpstreamClient = Client<EndpointConnector, Incoming>;

/// How long an idle pooled upstream connection is kept; a client unused for this long holds
/// no connection and is dropped from the map at the next sweep.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// The smallest client map that triggers a sweep by size.
const SWEEP_MIN: usize = 64;

/// Upstream HTTP clients, one pool per (endpoint address, protocol). Each request is
/// resolved first, so a connection to an endpoint that left the ready set is never reused.
///
/// Endpoints come and go (pods are replaced), so the map is swept of clients unused for
/// `POOL_IDLE` whenever it has doubled since the last sweep or a sweep is that old: it
/// stays bounded by the endpoints actually in use.
#[derive(Debug, Clone)]
pub(crate) struct Upstreams {
    pub(crate) resolver: SharedResolver,
    /// Opens every connection to a backend.
    pub(crate) backends: Backends,
    clients: Arc<Mutex<Clients>>,
}

#[derive(Debug)]
struct Clients {
    map: HashMap<(SocketAddr, bool), (UpstreamClient, Instant)>,
    sweep_at: usize,
    last_sweep: Instant,
}

impl Upstreams {
    /// Clients whose targets resolve through `resolver`, connected by `backends`.
    pub(crate) fn new(resolver: SharedResolver, backends: Backends) -> Self {
        Self {
            resolver,
            backends,
            clients: Arc::new(Mutex::new(Clients {
                map: HashMap::new(),
                sweep_at: SWEEP_MIN,
                last_sweep: Instant::now(),
            })),
        }
    }

    /// The pooled client for one endpoint, HTTP/2 (prior knowledge) or HTTP/1.1.
    pub(crate) fn client(&self, addr: SocketAddr, h2: bool) -> UpstreamClient {
        self.client_at(addr, h2, Instant::now())
    }

    /// [`Self::client`] at time `now` (the sweep clock).
    fn client_at(&self, addr: SocketAddr, h2: bool, now: Instant) -> UpstreamClient {
        let mut clients = match self.clients.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some((client, used)) = clients.map.get_mut(&(addr, h2)) {
            *used = now;
            return client.clone();
        }
        let stale = now.saturating_duration_since(clients.last_sweep) >= POOL_IDLE;
        if clients.map.len() >= clients.sweep_at || stale {
            clients
                .map
                .retain(|_, (_, used)| now.saturating_duration_since(*used) < POOL_IDLE);
            clients.sweep_at = (clients.map.len() * 2).max(SWEEP_MIN);
            clients.last_sweep = now;
        }
        let client = Client::builder(TokioExecutor::new())
            .http2_only(h2)
            .pool_idle_timeout(POOL_IDLE)
            .build(EndpointConnector {
                addr,
                backends: self.backends.clone(),
            });
        clients.map.insert((addr, h2), (client.clone(), now));
        client
    }

    /// Endpoints with a client in the map.
    #[cfg(test)]
    fn len(&self) -> usize {
        match self.clients.lock() {
            Ok(m) => m.map.len(),
            Err(p) => p.into_inner().map.len(),
        }
    }
}
/// Endpoints with a dedicated connection, per downstream connection. Beyond this many distinct
/// endpoints in recent use, requests go through the shared pool instead.
pub(crate) const MAX_DEDICATED: usize = 4;

/// A dedicated connection not used for this many requests of its downstream connection may
/// give its slot to a new endpoint.
const STALE_AFTER: u64 = 16;

/// Why a dedicated exchange failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection to the endpoint could not be opened.
    Connect(Error),
    /// The exchange failed after the connection was open.
    Http(hyper::Error),
}

/// A dedicated upstream connection.
#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    sender: Option<SendRequest<Incoming>>,
    last_used: u64,
}

/// The dedicated upstream connections of one downstream connection.
#[derive(Debug, Default)]
pub(crate) struct Dedicated {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    slots: Vec<Slot>,
    requests: u64,
}

/// What [`Dedicated::checkout`] found for an endpoint.
enum Checkout {
    /// An open connection, taken out of its slot for one exchange.
    Reuse(SendRequest<Incoming>),
    /// A slot is reserved: open a connection.
    Open,
    /// Every slot is busy with a recently used endpoint: use the shared pool.
    Full,
}

impl Dedicated {
    /// No connection yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Endpoints with a dedicated connection (open or being opened).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().slots.len()
    }

    fn checkout(&self, addr: SocketAddr) -> Checkout {
        let mut inner = self.lock();
        inner.requests += 1;
        let now = inner.requests;
        if let Some(slot) = inner.slots.iter_mut().find(|s| s.addr == addr) {
            slot.last_used = now;
            return match slot.sender.take() {
                Some(sender) if !sender.is_closed() => Checkout::Reuse(sender),
                _ => Checkout::Open,
            };
        }
        if inner.slots.len() >= MAX_DEDICATED {
            // Endpoints that left the ready set (or lost to balancing) give way.
            inner
                .slots
                .retain(|s| now.saturating_sub(s.last_used) < STALE_AFTER);
            if inner.slots.len() >= MAX_DEDICATED {
                return Checkout::Full;
            }
        }
        inner.slots.push(Slot {
            addr,
            sender: None,
            last_used: now,
        });
        Checkout::Open
    }

    fn checkin(&self, addr: SocketAddr, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.iter_mut().find(|s| s.addr == addr) {
            slot.sender = Some(sender);
        }
    }

    /// Sends `req` to `addr` over this downstream connection's dedicated connection to it,
    /// opening one if needed. A request that a reused connection did not take (the endpoint
    /// closed it while idle) is sent once more on a new connection.
    ///
    /// Returns the request back when every slot is taken by recently used endpoints: the
    /// caller then sends it through the shared pool.
    pub(crate) async fn send(
        &self,
        (addr, backends): (SocketAddr, &Backends),
        req: Request<Incoming>,
    ) -> Result<std::result::Result<Response<Incoming>, SendError>, Request<Incoming>> {
        let reused = match self.checkout(addr) {
            Checkout::Full => return Err(req),
            Checkout::Reuse(sender) => ready(sender).await,
            Checkout::Open => None,
        };
        let was_reused = reused.is_some();
        let mut sender = match reused {
            Some(s) => s,
            None => match open(addr, backends).await {
                Ok(s) => s,
                Err(e) => return Ok(Err(SendError::Connect(e))),
            },
        };
        let result = match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut e) => match e.take_message() {
                Some(req) if was_reused => match open(addr, backends).await {
                    Ok(fresh) => {
                        sender = fresh;
                        sender.send_request(req).await.map_err(SendError::Http)
                    }
                    Err(e) => return Ok(Err(SendError::Connect(e))),
                },
                _ => Err(SendError::Http(e.into_error())),
            },
        };
        self.checkin(addr, sender);
        Ok(result)
    }
}

/// How long a reused connection may take to become ready (its previous exchange finishing)
/// before a new connection is opened instead.
const READY_WAIT: Duration = Duration::from_secs(1);

/// `sender` once it can take a request: at once when it is idle (no timer on that path), else
/// within [`READY_WAIT`]; `None` when it closed or stays busy.
async fn ready(mut sender: SendRequest<Incoming>) -> Option<SendRequest<Incoming>> {
    let now = std::future::poll_fn(|cx| Poll::Ready(sender.poll_ready(cx))).await;
    match now {
        Poll::Ready(Ok(())) => Some(sender),
        Poll::Ready(Err(_)) => None,
        Poll::Pending => match tokio::time::timeout(READY_WAIT, sender.ready()).await {
            Ok(Ok(())) => Some(sender),
            _ => None,
        },
    }
}

/// Opens an HTTP/1.1 connection to `addr`, driven by a task on the current thread.
async fn open(addr: SocketAddr, backends: &Backends) -> crate::Result<SendRequest<Incoming>> {
    let connect_error = |source| Error::Connect {
        addr: addr.to_string(),
        what: "target backend",
        source,
    };
    let stream = backends.connect(addr).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connect_error(std::io::Error::other(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn upstream_clients_of_endpoints_gone_for_the_idle_time_are_swept() {
        let up = Upstreams::new(
            Arc::new(crate::transport::resolve::StaticResolver::new()),
            Backends::plain(),
        );
        let t0 = Instant::now();
        let addr = |p: u16| SocketAddr::from(([10, 0, 0, 1], p));
        // 1,000 endpoints used once (pods replaced over and over) ...
        for p in 1..=1000 {
            up.client_at(addr(p), false, t0);
        }
        // ... sweeps by size keep only what was used within the idle time: all of them here.
        assert_eq!(up.len(), 1000);
        // One endpoint keeps being used; the others are gone.
        let later = t0 + Duration::from_secs(20);
        up.client_at(addr(1), false, later);
        let much_later = t0 + POOL_IDLE + Duration::from_secs(1);
        up.client_at(addr(1), false, much_later);
        // The next new endpoint triggers a sweep by age: only the live ones remain.
        up.client_at(addr(2000), true, much_later);
        assert_eq!(up.len(), 2);
        // The same (address, protocol) reuses its client: no growth.
        for _ in 0..10 {
            up.client_at(addr(2000), true, much_later);
        }
        assert_eq!(up.len(), 2);
    }

    /// A listener that counts its connections and hands each to `serve` with its number.
    async fn counted<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(tokio::net::TcpStream, usize, SocketAddr) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve(tcp, n, addr));
            }
        });
        (addr, conns)
    }

    /// A hyper backend that answers each request with its own port and the connection
    /// number; with `close_after`, each connection answers that many requests, the last with
    /// `Connection: close` (hyper then closes it).
    async fn backend(close_after: Option<usize>) -> (SocketAddr, Arc<AtomicUsize>) {
        counted(move |tcp, n, addr| {
            let served = Arc::new(AtomicUsize::new(0));
            let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let count = served.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!("{}/{n}", addr.port());
                let mut resp = Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                if close_after.is_some_and(|c| count >= c) {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            }
        })
        .await
    }

    /// Sends one GET through `d` by way of a real downstream hyper server connection (the
    /// request body type is hyper's `Incoming`), returning the response body.
    async fn get(d: &Arc<Dedicated>, addr: SocketAddr) -> String {
        use http_body_util::BodyExt;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        let d = d.clone();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let d = d.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    parts.uri = "/".parse().unwrap();
                    let req = Request::from_parts(parts, body);
                    let resp = match d.send((addr, &Backends::plain()), req).await {
                        Ok(Ok(resp)) => resp.map(|b| b.boxed()),
                        Ok(Err(e)) => panic!("send failed: {e:?}"),
                        Err(_) => panic!("no slot"),
                    };
                    Ok::<_, hyper::Error>(resp)
                }
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await
                .unwrap();
        });
        let tcp = tokio::net::TcpStream::connect(front).await.unwrap();
        let (mut send, conn) =
            http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", "t")
            .body(Default::default());
        let resp = send.send_request(req.unwrap()).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        drop(send);
        server.await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn one_connection_serves_every_request_to_the_same_endpoint() {
        let (addr, conns) = backend(None).await;
        let d = Arc::new(Dedicated::new());
        let port = addr.port();
        for _ in 0..5 {
            assert_eq!(get(&d, addr).await, format!("{port}/1"));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        assert_eq!(d.len(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_endpoint_closes_is_replaced() {
        // Connection: close after each response ...
        let (addr, conns) = backend(Some(1)).await;
        let d = Arc::new(Dedicated::new());
        let port = addr.port();
        for n in 1..=3 {
            assert_eq!(get(&d, addr).await, format!("{port}/{n}"));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
        // ... and after every second one.
        let (addr, conns) = backend(Some(2)).await;
        let port = addr.port();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(get(&d, addr).await);
        }
        assert_eq!(
            got,
            [1, 1, 2, 2].map(|n| format!("{port}/{n}")).to_vec(),
            "two requests per connection"
        );
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_new_endpoint_gets_its_own_connection_and_stale_ones_give_way() {
        let d = Arc::new(Dedicated::new());
        let mut backends = Vec::new();
        for _ in 0..MAX_DEDICATED {
            backends.push(backend(None).await);
        }
        // The resolver moves from one endpoint to the next: each gets its connection.
        for (addr, _) in &backends {
            assert_eq!(get(&d, *addr).await, format!("{}/1", addr.port()));
        }
        assert_eq!(d.len(), MAX_DEDICATED);
        // Every slot was used recently: one endpoint more goes to the shared pool.
        let (extra, extra_conns) = backend(None).await;
        assert!(
            matches!(d.checkout(extra), Checkout::Full),
            "all slots in recent use"
        );
        // After STALE_AFTER requests to one endpoint only, the others give way.
        let (first, first_conns) = &backends[0];
        for _ in 0..STALE_AFTER {
            assert_eq!(get(&d, *first).await, format!("{}/1", first.port()));
        }
        assert_eq!(get(&d, extra).await, format!("{}/1", extra.port()));
        assert_eq!(d.len(), 2, "the first endpoint and the new one");
        assert_eq!(first_conns.load(Ordering::SeqCst), 1);
        assert_eq!(extra_conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_still_busy_with_its_last_response_is_not_waited_on_forever() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A backend that answers each connection's first request with the start of a body it
        // never finishes.
        let (addr, conns) = counted(|mut s, _, _| async move {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                .await;
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        let d = Arc::new(Dedicated::new());
        // Two requests on one downstream connection; the first response's body stays unread
        // (held), so its upstream connection stays busy.
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let (d2, held2) = (d.clone(), held.clone());
        tokio::spawn(async move {
            let (s, _) = front.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (d, held) = (d2.clone(), held2.clone());
                async move {
                    let (mut parts, body) = req.into_parts();
                    parts.uri = "/".parse().unwrap();
                    let resp = d
                        .send((addr, &Backends::plain()), Request::from_parts(parts, body))
                        .await
                        .unwrap()
                        .unwrap();
                    held.lock().unwrap().push(resp.into_body());
                    Ok::<_, hyper::Error>(Response::new(
                        http_body_util::Empty::<bytes::Bytes>::new(),
                    ))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
        let tcp = tokio::net::TcpStream::connect(front_addr).await.unwrap();
        let (mut send, conn) =
            http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        for _ in 0..2 {
            send.ready().await.unwrap();
            let req = Request::get("/")
                .header("host", "t")
                .body(Default::default());
            let resp = send.send_request(req.unwrap()).await.unwrap();
            assert_eq!(resp.status(), 200);
        }
        assert_eq!(held.lock().unwrap().len(), 2);
        assert_eq!(
            conns.load(Ordering::SeqCst),
            2,
            "a new connection for the second"
        );
    }

    #[tokio::test]
    async fn an_endpoint_that_refuses_is_a_connect_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(matches!(
            open(addr, &Backends::plain()).await,
            Err(Error::Connect {
                what: "target backend",
                ..
            })
        ));
    }
}
