//! The requests phase: each paid request sent until it has a final answer (the service
//! killed at random instants meanwhile), some leases released by their owner, and,
//! once calm, what is still owed asked for again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use paygress_cashu::testkit::MintProxy;
use paygress_core::CashuToken;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::ChaosOptions;
use super::outcome::{
    Outcome, Release, record_lease, release_key, request_key, resend_code, token_value,
};
use super::report::Report;
use super::service::{Service, sigkill};

/// Most sends of one request before it counts as having no final answer.
const MAX_SENDS: usize = 200;

/// Drives the service the way its clients do.
pub(super) struct Driver<'a> {
    pub(super) opts: &'a ChaosOptions,
    pub(super) rng: StdRng,
    pub(super) service: Service,
    pub(super) client: reqwest::Client,
    pub(super) proxy: Arc<Mutex<MintProxy>>,
    /// SIGKILLs that hit a running service.
    pub(super) kills: Arc<AtomicU64>,
}

impl Driver<'_> {
    /// Request `i`: pays `token` (worth `value`) until the answer is final, then, now
    /// and then, releases the lease it got.
    pub(super) async fn request(
        &mut self,
        i: usize,
        token: &CashuToken,
        value: u64,
        report: &mut Report,
    ) -> Result<Outcome> {
        let mut out = Outcome {
            value,
            ..Outcome::default()
        };
        let key = request_key(self.opts.seed, i);
        let body = json!({
            "cashu_token": token.expose(),
            "duration_minutes": if self.rng.random_bool(0.5) { Some(1) } else { None },
            "ssh_username": "chaos",
        });
        if self.rng.random_bool(self.opts.mint_down_probability) {
            report.mint_down += 1;
            self.proxy.lock().await.down().await;
            let p = self.proxy.clone();
            let wait = Duration::from_millis(self.rng.random_range(100..800));
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = p.lock().await.up().await;
            });
        }
        self.spawn(i, &key, &body, &mut out, report).await?;
        if let (Some(pod), Some(expires_at)) = (out.pods.iter().next(), out.expires.last())
            && out.pods.len() == 1
            && self.rng.random_bool(self.opts.release_probability)
        {
            let release = self
                .release(i, &key, pod.clone(), *expires_at, report)
                .await?;
            out.release = Some(release);
        }
        if self.opts.verbose {
            print_outcome(i, &out);
        }
        Ok(out)
    }

    /// Sends the spawn until its answer is final.
    async fn spawn(
        &mut self,
        i: usize,
        key: &str,
        body: &Value,
        out: &mut Outcome,
        report: &mut Report,
    ) -> Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > MAX_SENDS {
                report
                    .problems
                    .push(format!("request {i}: no final answer after 200 sends"));
                return Ok(());
            }
            self.prepare_send(report).await?;
            let sent = self
                .client
                .post(format!("{}/spawn-pod", self.service.http))
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .await;
            let Some((status, v)) = read_answer(sent).await else {
                continue;
            };
            if status.as_u16() == 201 {
                record_lease(out, &v);
                if out.owed {
                    // Change owed: ask again later.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                return Ok(());
            }
            let code = v["code"].as_str().unwrap_or("").to_owned();
            if let Some(r) = v["refund_token"].as_str() {
                out.refund = Some(CashuToken::new(r));
                out.code = Some(code);
                return Ok(());
            }
            if resend_code(&code) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            out.code = Some(code);
            out.untouched = true;
            return Ok(());
        }
    }

    /// Releases lease `pod` (owned through `key`) until the answer is final, then
    /// checks that it is gone.
    async fn release(
        &mut self,
        i: usize,
        key: &str,
        pod: String,
        expires_at: jiff::Timestamp,
        report: &mut Report,
    ) -> Result<Release> {
        let mut release = Release {
            pod,
            sent_at: jiff::Timestamp::now(),
            expires_at,
            released: false,
            refund: None,
            amount: 0,
            owed: false,
            code: None,
        };
        let rkey = release_key(self.opts.seed, i);
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > MAX_SENDS {
                report.problems.push(format!(
                    "request {i}: release has no final answer after 200 sends"
                ));
                break;
            }
            self.prepare_send(report).await?;
            let sent = self
                .client
                .post(format!(
                    "{}/pods/{}/release",
                    self.service.http, release.pod
                ))
                .header("X-Lease-Key", key)
                .header("Idempotency-Key", &rkey)
                .send()
                .await;
            let Some((status, v)) = read_answer(sent).await else {
                continue;
            };
            if status.is_success() {
                release.record(&v);
                if release.owed {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                break;
            }
            let code = v["code"].as_str().unwrap_or("").to_owned();
            if resend_code(&code) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            release.code = Some(code);
            break;
        }
        if release.released {
            // Gone at once.
            let gone = self
                .client
                .get(format!("{}/pods/{}", self.service.http, release.pod))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if !matches!(gone, Ok(404)) {
                report.problems.push(format!(
                    "request {i}: lease {} still listed after its release ({gone:?})",
                    release.pod
                ));
            }
        }
        Ok(release)
    }

    /// Before each send: the service is up, and now and then a SIGKILL is on its way
    /// (a random instant within the next 120 ms).
    async fn prepare_send(&mut self, report: &mut Report) -> Result<()> {
        self.service.ensure_up(&self.client, true).await?;
        if self.rng.random_bool(self.opts.kill_probability) {
            let (pid, kills) = (self.service.pid.clone(), self.kills.clone());
            let wait = Duration::from_millis(self.rng.random_range(0..120));
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if sigkill(pid.load(Ordering::SeqCst)).await {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        report.sends += 1;
        Ok(())
    }

    /// Once calm: asks again for change and refunds still owed (up to a minute each).
    pub(super) async fn collect_owed(
        &mut self,
        outcomes: &mut [Outcome],
        tokens: &[CashuToken],
        report: &mut Report,
    ) {
        for (i, out) in outcomes.iter_mut().enumerate() {
            let key = request_key(self.opts.seed, i);
            let deadline = Instant::now() + Duration::from_secs(60);
            while out.owed && Instant::now() < deadline {
                let body = json!({"cashu_token": tokens[i].expose(), "ssh_username": "chaos"});
                if let Ok(r) = self
                    .client
                    .post(format!("{}/spawn-pod", self.service.http))
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await
                    && let Ok(v) = r.json::<Value>().await
                {
                    record_lease(out, &v);
                }
                if out.owed {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if out.owed {
                report
                    .problems
                    .push(format!("request {i}: change still owed after the run"));
            }
            if let Some(release) = out.release.as_mut() {
                let deadline = Instant::now() + Duration::from_secs(60);
                while release.owed && Instant::now() < deadline {
                    if let Ok(r) = self
                        .client
                        .post(format!(
                            "{}/pods/{}/release",
                            self.service.http, release.pod
                        ))
                        .header("X-Lease-Key", &key)
                        .header("Idempotency-Key", release_key(self.opts.seed, i))
                        .send()
                        .await
                        && let Ok(v) = r.json::<Value>().await
                    {
                        release.record(&v);
                    }
                    if release.owed {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                if release.owed {
                    report.problems.push(format!(
                        "request {i}: release refund still owed after the run"
                    ));
                }
            }
        }
    }
}

/// The status and JSON body of an answer; `None` when there is none to read (after a
/// short pause when the request got no answer at all).
async fn read_answer(
    sent: reqwest::Result<reqwest::Response>,
) -> Option<(reqwest::StatusCode, Value)> {
    let Ok(resp) = sent else {
        tokio::time::sleep(Duration::from_millis(20)).await;
        return None;
    };
    let status = resp.status();
    resp.json::<Value>().await.ok().map(|v| (status, v))
}

fn print_outcome(i: usize, out: &Outcome) {
    eprintln!(
        "request {i}: value {} pods {:?} charged {} change {} refund {} code {:?}",
        out.value,
        out.pods,
        out.charged,
        out.change.as_ref().map_or(0, token_value),
        out.refund.as_ref().map_or(0, token_value),
        out.code
    );
    if let Some(r) = &out.release {
        eprintln!(
            "request {i}: released {} refund {} (at most {}) code {:?}",
            r.released,
            r.refund.as_ref().map_or(0, token_value),
            r.bound(),
            r.code
        );
    }
}
