//! The HTTP listener: `GET /metrics` (Prometheus text format), `GET /healthz`
//! (the process is alive) and `GET /readyz` (200 when ready, 503 with the
//! reason otherwise). It runs on a thread of its own with a single-threaded
//! tokio runtime, so a slow scraper never takes time from handlers.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{CONTENT_TYPE, Metrics};

/// A running listener. It serves until the process exits, or until this
/// handle is dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MetricsServer {
    /// Listen on `listen` (`host:port`; port 0 picks a free one) and serve
    /// `metrics`. The address is bound before this returns, so a port in use
    /// is an error here, not a log line later.
    pub fn start(listen: &str, metrics: Metrics) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen for metrics on {listen}"))?;
        listener
            .set_nonblocking(true)
            .context("cannot make the metrics listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("cannot read the metrics listener's address")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the metrics listener's runtime")?;
        std::thread::Builder::new()
            .name("alerthost-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(%error, "cannot serve metrics");
                            return;
                        }
                    };
                    tokio::select! {
                        () = accept_loop(listener, metrics) => {}
                        _ = stopped => {}
                    }
                });
            })
            .context("cannot start the metrics listener's thread")?;
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        Ok(MetricsServer { addr, _stop: stop })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, metrics: Metrics) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(%error, "metrics listener cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&metrics, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            // A client that never finishes its request headers is dropped.
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

fn respond(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match metrics.readiness().check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        other => text(
            StatusCode::NOT_FOUND,
            format!("no page {other}: try /metrics, /healthz or /readyz\n"),
        ),
    }
}
