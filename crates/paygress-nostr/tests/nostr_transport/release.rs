//! Releasing a lease over Nostr: only its owner can.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_releases_over_nip44_and_nip17_and_nobody_else_can() {
    let h = Harness::start(1).await;
    let buyer = h.buyer().await;
    let release = |pod: &str| {
        Request::Release(paygress_core::ReleaseRequest {
            pod_name: pod.to_owned(),
        })
    };
    for scheme in [Scheme::Nip44, Scheme::Nip17] {
        let opts = SendOptions {
            scheme,
            p_tag: true,
        };
        let reply = buyer.request(&spawn_req(h.token(30)), opts).await.unwrap();
        let pod = access(&reply).pod_name.to_string();

        let stranger = h.buyer_as(Keys::generate()).await;
        let refused = stranger.request(&release(&pod), opts).await.unwrap();
        assert_eq!(
            refused.error_code(),
            Some(ErrorCode::NotOwner),
            "{scheme:?}: {refused:?}"
        );
        assert!(refused.returned_token().is_none());

        let reply = buyer.request(&release(&pod), opts).await.unwrap();
        let Reply::Released(released) = reply else {
            panic!("{scheme:?}: expected a release, got {reply:?}")
        };
        assert_eq!(released.pod_name.to_string(), pod);
        // 30 minutes bought, seconds used, 5 minutes' minimum charge (60 sat an hour).
        assert!(
            (24..=25).contains(&released.refund_amount.value),
            "{released:?}"
        );
        let token = released.refund_token.clone().unwrap();
        assert_eq!(h.verifier.spend(&token), Some(released.refund_amount));

        // Released twice: a clear error and no second token. (Sent over NIP-44: a
        // NIP-17 rumor with the same content in the same second is the same request,
        // answered once.)
        let again = buyer
            .request(&release(&pod), SendOptions::default())
            .await
            .unwrap();
        assert_eq!(
            again.error_code(),
            Some(ErrorCode::PodNotFound),
            "{scheme:?}: {again:?}"
        );
        assert!(again.returned_token().is_none());
    }
}
