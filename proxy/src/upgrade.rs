//! Protocol upgrades (WebSocket): once the region says 101, splice the two connections.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::ProxyBody;

/// Joins the client's upgraded connection to the region's once both sides have switched.
pub fn splice(client: OnUpgrade, region_resp: &mut http::Response<ProxyBody>, region: &str) {
    let upstream = hyper::upgrade::on(region_resp);
    let region = region.to_owned();
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(%region, "upgrade failed: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%region, "upgraded connection ended: {e}");
        }
    });
}
