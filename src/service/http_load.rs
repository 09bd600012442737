//! Benchmark helper: a steady HTTP load on a running service (`leadscore
//! bench-http`), light enough not to compete with the service for the
//! machine's cores. One keep-alive connection, requests paced at a fixed
//! rate (late ones are sent at once, not dropped), every `metrics_every`-th
//! request a `/metrics` scrape and the others `/v1/contacts/{id}` over the
//! given ids. It runs until the service stops answering.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct LoadReport {
    pub requests: u64,
    pub seconds: f64,
    pub status: BTreeMap<u16, u64>,
    pub contact_p50_ms: f64,
    pub contact_p99_ms: f64,
    pub metrics_p50_ms: f64,
    pub metrics_p99_ms: f64,
}

/// One request on `conn`; returns the status.
fn get(conn: &mut BufReader<TcpStream>, address: &str, path: &str) -> std::io::Result<u16> {
    write!(
        conn.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n"
    )?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(status)
}

fn quantile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// Sends `rps` requests per second to `address` until it stops answering.
pub fn run(
    address: &str,
    rps: u32,
    ids: &[String],
    metrics_every: u64,
) -> anyhow::Result<LoadReport> {
    let connect = || -> std::io::Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(BufReader::new(stream))
    };
    let mut conn = connect()?;
    let period = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
    let started = Instant::now();
    let mut next = started;
    let mut report = LoadReport::default();
    let (mut contact_ms, mut metrics_ms) = (Vec::new(), Vec::new());
    let mut rng = fastrand::Rng::with_seed(7);
    loop {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += period;
        let scrape = metrics_every > 0 && report.requests % metrics_every == 0;
        let path = if scrape || ids.is_empty() {
            "/metrics".to_string()
        } else {
            format!("/v1/contacts/{}", ids[rng.usize(..ids.len())])
        };
        let t0 = Instant::now();
        let status = match get(&mut conn, address, &path) {
            Ok(status) => status,
            // The service closed the connection: reconnect once, else it has stopped.
            Err(_) => match connect().and_then(|mut c| {
                let s = get(&mut c, address, &path)?;
                conn = c;
                Ok(s)
            }) {
                Ok(status) => status,
                Err(_) => break,
            },
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if scrape {
            metrics_ms.push(ms);
        } else {
            contact_ms.push(ms);
        }
        report.requests += 1;
        *report.status.entry(status).or_default() += 1;
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.contact_p50_ms = quantile(&mut contact_ms, 0.5);
    report.contact_p99_ms = quantile(&mut contact_ms, 0.99);
    report.metrics_p50_ms = quantile(&mut metrics_ms, 0.5);
    report.metrics_p99_ms = quantile(&mut metrics_ms, 0.99);
    Ok(report)
}
