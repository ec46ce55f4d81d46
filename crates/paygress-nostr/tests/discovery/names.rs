//! Service names: NIP-05 and nprofile resolve to the service and its relays.

use super::*;

/// Serves `body` with `status` to every request on 127.0.0.1 (one connection at a time).
async fn http_server(status: &'static str, body: String) -> (u16, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip05_names_and_nprofiles_resolve_to_the_service_and_its_relays() {
    let h = Harness::start(1).await;
    let service = h.keys.public_key().to_hex();
    let relay = h.urls()[0].to_string();
    let body =
        format!(r#"{{"names":{{"compute":"{service}"}},"relays":{{"{service}":["{relay}"]}}}}"#);
    let (port, server) = http_server("200 OK", body).await;
    let found = resolve_service(&format!("compute@127.0.0.1:{port}"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found.public_key, h.keys.public_key());
    assert_eq!(found.relays, h.urls());
    // Unknown name: an error, not some other key.
    assert!(
        resolve_service(&format!("nobody@127.0.0.1:{port}"), TIMEOUT)
            .await
            .is_err()
    );
    server.abort();
    let (port, server) = http_server("404 Not Found", "{}".into()).await;
    assert!(
        resolve_service(&format!("compute@127.0.0.1:{port}"), TIMEOUT)
            .await
            .is_err()
    );
    server.abort();

    // Reached with the NIP-05 relay hints only (no --relay): the service is served.
    let (buyer, route) = reach(Keys::generate(), &[], &found, Scheme::Nip44, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(route.write, h.urls());
    let reply = buyer
        .with_timeout(TIMEOUT)
        .request(&status_req("ssh-pod-00000000"), SendOptions::default())
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Error(_)), "{reply:?}");

    // An nprofile carries the same hints.
    let nprofile =
        paygress_nostr::nostr_sdk::nips::nip19::Nip19Profile::new(h.keys.public_key(), h.urls());
    let text = paygress_nostr::nostr_sdk::ToBech32::to_bech32(&nprofile).unwrap();
    let found = resolve_service(&text, TIMEOUT).await.unwrap();
    assert_eq!(found.relays, h.urls());
}
