//! Soak run (`cargo xtask bench soak --hours H`): the real `paygress serve` (local
//! backend, HTTP) against an in-process mint, fed a steady stream of spawns, top-ups
//! and expiries for H hours, while its RSS, open files and journal size are sampled.
//! Prints one CSV line per sample and a verdict on the samples after the warm-up (leases
//! last a minute and are reaped every 15 s, so the steady state comes after about
//! [`WARMUP`]): the last fifth of them must not be more than `--max-growth` (default
//! 25 %) above the first fifth. A run too short for that prints its samples and says
//! that it was not judged.
//!
//! Runs shorter than two hours keep no finished request in the journal
//! (`JOURNAL_RETENTION_HOURS=0`: pruned at each maintenance pass), longer ones keep them
//! an hour; either way the journal must reach a steady size within the run.
//!
//! Usage: `soak --bin PATH --hours H [--every-ms 2000] [--sample-secs S]
//! [--ports 2600-2699] [--max-growth 0.25]`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use paygress_cashu::testkit::{TestMint, TokenFormat};

/// Time to the steady state: a lease lasts a minute, the reaper runs every 15 s.
const WARMUP: Duration = Duration::from_secs(150);

/// Fewest samples after the warm-up for a verdict.
const MIN_JUDGED: usize = 10;

struct Args {
    bin: PathBuf,
    hours: f64,
    every: Duration,
    sample: Option<Duration>,
    ports: String,
    max_growth: f64,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        bin: PathBuf::new(),
        hours: 1.0,
        every: Duration::from_millis(2000),
        sample: None,
        ports: "2600-2699".into(),
        max_growth: 0.25,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--bin" => a.bin = v.into(),
            "--hours" => a.hours = v.parse()?,
            "--every-ms" => a.every = Duration::from_millis(v.parse()?),
            "--sample-secs" => a.sample = Some(Duration::from_secs(v.parse()?)),
            "--ports" => a.ports = v,
            "--max-growth" => a.max_growth = v.parse()?,
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.bin.as_os_str().is_empty() {
        bail!("--bin PATH (the paygress binary, built with the dev feature off or on)");
    }
    Ok(a)
}

#[derive(Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: u64,
    journal: u64,
}

fn sample(pid: u32, journal: &Path) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let journal = std::fs::metadata(journal).map_or(0, |m| m.len());
    Sample {
        rss_kib,
        fds,
        journal,
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse()?;
    let mint = TestMint::start().await.context("mint")?;
    let data = tempfile::tempdir()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&args.bin)
        .arg("serve")
        .env("RUN_MODE", "http")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("POD_BACKEND", "local")
        .env("PAYGRESS_DATA_DIR", data.path().join("state"))
        .env("WHITELISTED_MINTS", mint.url().to_string())
        .env("NOSTR_RELAYS", "")
        .env("SSH_HOST", "127.0.0.1")
        .env("LOCAL_PORT_RANGE", &args.ports)
        .env(
            "LOCAL_SANDBOX",
            std::env::var("LOCAL_SANDBOX").unwrap_or_else(|_| "unsandboxed".into()),
        )
        .env("HTTP_RATE_LIMIT_PER_MINUTE", "0")
        // Problems only, without cdk's slow-query notices (as the default filters).
        .env("RUST_LOG", paygress_bin::logging::QUIET_FILTER)
        // Finished requests are kept this long, then pruned: the journal is flat only
        // after it, so short runs keep none.
        .env(
            "JOURNAL_RETENTION_HOURS",
            if args.hours < 2.0 { "0" } else { "1" },
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.bin.display()))?;
    let pid = child.id().context("pid")?;
    let http = reqwest::Client::new();
    let up = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > up {
            bail!("the service never became healthy");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let journal = data.path().join("state").join("journal.jsonl");
    let run = Duration::from_secs_f64(args.hours * 3600.0);
    let end = Instant::now() + run;
    // About a hundred samples a run, one every 1 to 10 s.
    let every_sample = args
        .sample
        .unwrap_or_else(|| (run / 100).clamp(Duration::from_secs(1), Duration::from_secs(10)));
    let mut samples = Vec::new();
    let mut next_sample = Instant::now();
    let (mut spawns, mut top_ups, mut failures) = (0u64, 0u64, 0u64);
    let mut live: Vec<String> = Vec::new();
    let mut n = 0u64;
    println!("elapsed_s,rss_kib,open_fds,journal_bytes,spawns,top_ups,failures");
    let started = Instant::now();
    while Instant::now() < end {
        n += 1;
        // Two of three requests spawn a one-minute lease; the third tops one up by a
        // minute. Leases expire and are reaped all along.
        let (path, body) = if n.is_multiple_of(3) && !live.is_empty() {
            // The newest lease: the oldest may have expired already.
            let pod = live.pop().unwrap_or_default();
            let token = mint.mint_token(1, TokenFormat::V4).await?;
            (
                "top-up-pod",
                serde_json::json!({"pod_name": pod, "cashu_token": token.expose()}),
            )
        } else {
            let token = mint.mint_token(1, TokenFormat::V4).await?;
            (
                "spawn-pod",
                serde_json::json!({"cashu_token": token.expose(), "duration_minutes": 1}),
            )
        };
        let r = http
            .post(format!("{base}/{path}"))
            .header("Idempotency-Key", format!("soak-request-{n:012}"))
            .json(&body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if path == "spawn-pod" {
                    spawns += 1;
                    if let Some(p) = v["pod_name"].as_str() {
                        live.push(p.to_owned());
                    }
                } else {
                    top_ups += 1;
                }
            }
            _ => failures += 1,
        }
        if Instant::now() >= next_sample {
            let s = sample(pid, &journal);
            println!(
                "{},{},{},{},{spawns},{top_ups},{failures}",
                started.elapsed().as_secs(),
                s.rss_kib,
                s.fds,
                s.journal
            );
            samples.push((started.elapsed(), s));
            next_sample += every_sample;
        }
        tokio::time::sleep(args.every).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;

    eprintln!("{spawns} spawns, {top_ups} top-ups, {failures} failures");
    let judged: Vec<Sample> = samples
        .iter()
        .filter(|(at, _)| *at >= WARMUP)
        .map(|(_, s)| *s)
        .collect();
    if judged.len() < MIN_JUDGED {
        eprintln!(
            "NOT JUDGED: {} samples after the {} s warm-up, {MIN_JUDGED} needed; run longer \
             (--hours 0.1 or more)",
            judged.len(),
            WARMUP.as_secs()
        );
        return Ok(());
    }
    let fifth = judged.len() / 5;
    let avg =
        |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).sum::<u64>() as f64 / s.len() as f64;
    let early = &judged[..fifth];
    let late = &judged[judged.len() - fifth..];
    let mut flat = true;
    for (name, f) in [
        ("rss_kib", (|s: &Sample| s.rss_kib) as fn(&Sample) -> u64),
        ("open_fds", |s: &Sample| s.fds),
        ("journal_bytes", |s: &Sample| s.journal),
    ] {
        let (a, b) = (avg(early, f), avg(late, f));
        let growth = if a > 0.0 { (b - a) / a } else { 0.0 };
        let ok = growth <= args.max_growth;
        flat &= ok;
        eprintln!(
            "{name}: {a:.0} -> {b:.0} ({:+.1} %) {}",
            growth * 100.0,
            if ok { "flat" } else { "GROWING" }
        );
    }
    if !flat {
        bail!("resource use grew over the run");
    }
    Ok(())
}
