//! A keep-alive HTTP/1.1 client (hyper) used for every HTTP measurement, and the trivial hyper
//! server whose round trip is part of the warm-invoke floor.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// One keep-alive connection.
pub struct Client {
    send: SendRequest<Full<Bytes>>,
    host: String,
    auth: Option<String>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, key: Option<&str>) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let auth = key.map(|k| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(k.as_bytes()))
        });
        Ok(Self { send, host: addr.to_string(), auth })
    }

    /// Sends one request; returns status, body and how long the round trip took.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Bytes, Duration)> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json");
        if let Some(a) = &self.auth {
            b = b.header("authorization", a);
        }
        let req = b.body(Full::new(Bytes::copy_from_slice(body)))?;
        let t = Instant::now();
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body, t.elapsed()))
    }
}

/// Starts a hyper server that answers every request with a fixed small JSON body: the floor for
/// "an HTTP round trip on loopback".
pub async fn trivial_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"ok\":true}",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
