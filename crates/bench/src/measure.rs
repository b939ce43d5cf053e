//! Timing: latencies and their percentiles, timed HTTP requests, and a seeded
//! random generator so runs can be repeated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Latencies, sorted.
#[derive(Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latencies")
            .field("count", &self.count())
            .field("p50", &self.p50())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .finish()
    }
}

impl Latencies {
    pub fn new(mut all: Vec<Duration>) -> Latencies {
        all.sort();
        Latencies(all)
    }

    /// How many were measured.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile (`0.99` for p99); zero when nothing was measured.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0[((self.0.len() as f64 - 1.0) * p).round() as usize]
    }

    pub fn p50(&self) -> Duration {
        self.percentile(0.50)
    }

    pub fn p99(&self) -> Duration {
        self.percentile(0.99)
    }

    /// Every latency, shortest first.
    pub fn iter(&self) -> impl Iterator<Item = &Duration> {
        self.0.iter()
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

/// Milliseconds, for printing.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A request to time: method, URL and Authorization header.
#[derive(Clone)]
pub(crate) struct Call {
    pub method: reqwest::Method,
    pub url: String,
    pub auth: String,
}

impl Call {
    pub fn new(method: reqwest::Method, url: &str, auth: &str) -> Call {
        Call {
            method,
            url: url.to_owned(),
            auth: auth.to_owned(),
        }
    }
}

/// Makes `call` `total` times, `concurrency` at once, each answer read in full;
/// fails on any answer but a success.
pub(crate) async fn timed(
    http: &reqwest::Client,
    call: &Call,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Latencies> {
    let (http, call) = (http.clone(), call.clone());
    let url = call.url.clone();
    timed_each(
        total,
        concurrency,
        move || {
            http.request(call.method.clone(), &call.url)
                .header("authorization", &call.auth)
        },
        move |status, _| {
            anyhow::ensure!(status.is_success(), "{url} answered {status}");
            Ok(())
        },
    )
    .await
}

/// Sends a request `build` makes afresh each time (a new signature, a new message
/// id) `total` times, `concurrency` at once; only the send and the reading of the
/// whole answer are timed, not the building. Fails as soon as `check` refuses an
/// answer (its status and body).
pub(crate) async fn timed_each<B, C>(
    total: usize,
    concurrency: usize,
    build: B,
    check: C,
) -> anyhow::Result<Latencies>
where
    B: Fn() -> reqwest::RequestBuilder + Send + Sync + 'static,
    C: Fn(reqwest::StatusCode, &[u8]) -> anyhow::Result<()> + Send + Sync + 'static,
{
    let concurrency = concurrency.max(1);
    let (build, check) = (Arc::new(build), Arc::new(check));
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let share = total / concurrency + usize::from(worker < total % concurrency);
        let (build, check) = (build.clone(), check.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(share);
            for _ in 0..share {
                let request = build();
                let t = Instant::now();
                let resp = request.send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                let took = t.elapsed();
                check(status, &body)?;
                out.push(took);
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.context("bench task")??);
    }
    Ok(Latencies::new(all))
}

/// xorshift64*: enough for choosing, reproducible from a printed seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
