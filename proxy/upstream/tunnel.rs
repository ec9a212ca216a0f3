//! An upgraded connection (HTTP/1.1 `Upgrade`, e.g. WebSocket): once both
//! sides have switched protocols, bytes are copied both ways until either
//! side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::http::h1::upgrade::ClientUpgrade;

pub fn spawn(client: ClientUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (mut client, upstream) = match tokio::join!(client.connection(), upstream) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(e), _) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
            (_, Err(e)) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
