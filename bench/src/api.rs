//! The few trainlens API calls the bench makes (plain HTTP/1.1, no TLS).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

pub fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// Percent-encode a query value (everything but RFC 3986 unreserved characters).
pub fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

async fn expect_status(resp: reqwest::Response, want: u16, what: &str) -> Result<Bytes> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("{what}: reading body"))?;
    if status.as_u16() != want {
        bail!(
            "{what}: expected HTTP {want}, got {status}: {}",
            truncate(&String::from_utf8_lossy(&body), 600)
        );
    }
    Ok(body)
}

/// `bytes` parsed as JSON; the error says `what` and shows the body's start.
fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str, problem: &str) -> Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        format!(
            "{what}: {problem} body {}",
            truncate(&String::from_utf8_lossy(bytes), 300)
        )
    })
}

/// Sends `req`, expects HTTP `want` and parses the answer as JSON; errors
/// say `what`.
async fn call<T: DeserializeOwned>(
    req: reqwest::RequestBuilder,
    want: u16,
    what: &str,
) -> Result<T> {
    let resp = req.send().await.with_context(|| what.to_string())?;
    let bytes = expect_status(resp, want, what).await?;
    parse(&bytes, what, "unexpected")
}

#[derive(Deserialize)]
struct CreatedRun {
    id: String,
}

pub async fn create_run(c: &reqwest::Client, base: &str, name: &str) -> Result<String> {
    let body = serde_json::json!({"project": "bench", "name": name, "config": {}, "tags": []});
    let req = c.post(format!("{base}/api/v1/runs")).json(&body);
    let run: CreatedRun = call(req, 201, "POST /api/v1/runs").await?;
    Ok(run.id)
}

#[derive(Deserialize)]
struct Accepted {
    accepted: u64,
}

/// POST one pre-serialized body; returns the server's `accepted` count.
pub async fn post_scalars(c: &reqwest::Client, url: &str, body: Bytes) -> Result<u64> {
    let req = c
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    let a: Accepted = call(req, 200, "POST /scalars").await?;
    Ok(a.accepted)
}

pub fn scalars_url(base: &str, run: &str) -> String {
    format!("{base}/api/v1/runs/{run}/scalars")
}

#[derive(Deserialize, Debug)]
pub struct SeriesInfo {
    pub key: String,
    pub count: u64,
    #[serde(default)]
    pub first_step: Option<i64>,
    #[serde(default)]
    pub last_step: Option<i64>,
}

#[derive(Deserialize)]
struct SeriesList {
    series: Vec<SeriesInfo>,
}

pub async fn list_series(c: &reqwest::Client, base: &str, run: &str) -> Result<Vec<SeriesInfo>> {
    let req = c.get(format!("{base}/api/v1/runs/{run}/series"));
    let l: SeriesList = call(req, 200, "GET /series").await?;
    Ok(l.series)
}

/// Check that every expected key holds exactly `steps` points, steps 0..steps-1.
pub fn verify_series(list: &[SeriesInfo], keys: &[String], steps: u64) -> Result<()> {
    for k in keys {
        let Some(s) = list.iter().find(|s| &s.key == k) else {
            bail!(
                "GET /series: key {k:?} missing ({} series listed)",
                list.len()
            );
        };
        if s.count != steps {
            bail!(
                "GET /series: key {k:?} has count {} but {steps} points were ingested",
                s.count
            );
        }
        if s.first_step.is_some_and(|f| f != 0)
            || s.last_step.is_some_and(|l| l != steps as i64 - 1)
        {
            bail!(
                "GET /series: key {k:?} spans steps {:?}..{:?}, expected 0..{}",
                s.first_step,
                s.last_step,
                steps - 1
            );
        }
    }
    Ok(())
}

/// The URL of a scalars read, key URL-encoded.
pub fn read_url(base: &str, run: &str, key: &str, max_points: Option<usize>) -> String {
    let mut u = format!("{}?key={}", scalars_url(base, run), pct_encode(key));
    if let Some(m) = max_points {
        u.push_str(&format!("&max_points={m}"));
    }
    u
}

/// GET a URL and return the whole body (what the read latency measures).
pub async fn get_body(c: &reqwest::Client, url: &str) -> Result<Bytes> {
    let resp = c.get(url).send().await.context("GET /scalars")?;
    expect_status(resp, 200, "GET /scalars").await
}

#[derive(Deserialize)]
struct ScalarsResp {
    key: String,
    steps: Vec<i64>,
    values: Vec<IgnoredAny>,
    #[serde(default)]
    times: Option<Vec<IgnoredAny>>,
}

/// Parse a `/scalars` read and check its shape. `full = Some(n)`: must be
/// exactly steps 0..n-1. `full = None`: a downsampled read of a series of
/// `series_len` points with `max_points`: 1..=2*max_points points, ascending,
/// covering the whole step range. Returns the number of points.
pub fn verify_read(
    body: &[u8],
    key: &str,
    series_len: u64,
    max_points: Option<usize>,
) -> Result<usize> {
    let r: ScalarsResp = parse(body, "GET /scalars", "unparseable")?;
    let n = r.steps.len();
    if r.key != key {
        bail!("GET /scalars: key {:?} returned, asked for {key:?}", r.key);
    }
    if r.values.len() != n {
        bail!("GET /scalars: {n} steps but {} values", r.values.len());
    }
    if let Some(t) = &r.times
        && t.len() != n
    {
        bail!("GET /scalars: {n} steps but {} times", t.len());
    }
    if r.steps.windows(2).any(|w| w[0] >= w[1]) {
        bail!("GET /scalars: steps are not strictly ascending");
    }
    match max_points {
        None => {
            if n as u64 != series_len {
                bail!(
                    "GET /scalars (full read): {n} points returned, expected exactly {series_len}"
                );
            }
            if r.steps.first() != Some(&0) || r.steps.last() != Some(&(series_len as i64 - 1)) {
                bail!(
                    "GET /scalars (full read): steps do not span 0..{}",
                    series_len - 1
                );
            }
        }
        Some(m) => {
            if n == 0 || n > 2 * m {
                bail!("GET /scalars (max_points={m}): {n} points returned");
            }
            // The downsampled series must cover the whole range, not just its head.
            let bucket = (series_len / m as u64).max(1) as i64;
            let last = series_len as i64 - 1;
            let (f, l) = (r.steps[0], r.steps[n - 1]);
            if f > 2 * bucket || l < last - 2 * bucket {
                bail!(
                    "GET /scalars (max_points={m}): steps span {f}..{l}, expected about 0..{last}"
                );
            }
        }
    }
    Ok(n)
}

/// Polls the run's findings until its diagnosis covers all its data;
/// returns the seconds waited.
pub async fn wait_diagnosed(
    c: &reqwest::Client,
    base: &str,
    run: &str,
    limit: Duration,
) -> Result<f64> {
    let start = std::time::Instant::now();
    let url = format!("{base}/api/v1/runs/{run}/findings");
    loop {
        let body = get_body(c, &url).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if v["up_to_date"] == true {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            bail!("run {run} not diagnosed {limit:?} after ingest");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
