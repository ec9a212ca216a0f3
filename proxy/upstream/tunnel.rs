//! An upgraded connection (HTTP/1.1 `Upgrade`, e.g. WebSocket): once both
//! sides have switched protocols, bytes are copied both ways until either
//! side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::http::h1::upgrade::{ClientUpgrade, Io};
use crate::upstream::pool::UpstreamUpgrade;

/// The upstream's side of an upgrade.
pub enum Upstream {
    /// A pooled connection, already switched.
    Direct(UpstreamUpgrade),
    /// hyper-util's client: switched once hyper lets go of it.
    Hyper(OnUpgrade),
}

impl Upstream {
    async fn connection(self) -> Option<Box<dyn Io>> {
        match self {
            Upstream::Direct(direct) => direct.take().map(|io| Box::new(io) as Box<dyn Io>),
            Upstream::Hyper(on) => match on.await {
                Ok(io) => Some(Box::new(TokioIo::new(io))),
                Err(e) => {
                    tracing::debug!(error = %e, "upstream upgrade did not complete");
                    None
                }
            },
        }
    }
}

pub fn spawn(client: ClientUpgrade, upstream: Upstream) {
    tokio::spawn(async move {
        let (mut client, mut upstream) =
            match tokio::join!(client.connection(), upstream.connection()) {
                (Ok(client), Some(upstream)) => (client, upstream),
                (Err(e), _) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
                (_, None) => return,
            };
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
