//! `--metrics ADDR`: the XDP steering program's counters in the Prometheus
//! text format over plain HTTP (GET /metrics). The control loop renders
//! the text once a second; a thread of its own answers scrapes from that
//! copy, so a slow scraper never touches the workers or the control loop.
//! Per-worker and per-SA counters live in the shared SA table and are
//! exported by sluiced.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The latest exposition, shared with the serving thread.
pub(crate) type Latest = Arc<Mutex<String>>;

/// One interface's counters: (interface, role, class, action, packets).
pub(crate) type Sample<'a> = (&'a str, &'a str, &'static str, &'static str, u64);

/// Renders the XDP counters.
pub(crate) fn render(samples: &[Sample<'_>]) -> String {
    let mut s = String::from(
        "# HELP sluice_xdp_packets_total Packets the XDP steering program classified, by interface, class and what it did with them.\n\
         # TYPE sluice_xdp_packets_total counter\n",
    );
    for (ifname, role, class, action, n) in samples {
        // Interface names are at most 15 bytes without quotes or
        // backslashes (the kernel refuses them), so no escaping is needed.
        s.push_str(&format!(
            "sluice_xdp_packets_total{{interface=\"{ifname}\",role=\"{role}\",class=\"{class}\",action=\"{action}\"}} {n}\n"
        ));
    }
    s.push_str(&format!(
        "# HELP sluice_dp_build_info sluice-dp's version.\n# TYPE sluice_dp_build_info gauge\nsluice_dp_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    ));
    s
}

/// Binds `addr` and serves `latest` at /metrics on a thread of its own.
pub(crate) fn serve(addr: SocketAddr, latest: Latest) -> Result<(), String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                // The request line and headers, at most 8 KiB within 2 s in
                // all: a slow client holds the (one) server thread no longer.
                let deadline = std::time::Instant::now() + Duration::from_secs(2);
                let mut buf = [0u8; 8192];
                let mut n = 0;
                while n < buf.len() {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() || c.set_read_timeout(Some(left)).is_err() {
                        break;
                    }
                    match c.read(&mut buf[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let req = &buf[..n];
                let (status, body) = if req.starts_with(b"GET /metrics ") {
                    let text = latest.lock().map(|s| s.clone()).unwrap_or_default();
                    ("200 OK", text)
                } else {
                    ("404 Not Found", "metrics are at /metrics\n".to_string())
                };
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_what_the_control_loop_rendered() {
        let latest: Latest = Arc::new(Mutex::new(render(&[(
            "ext0",
            "outside",
            "redirect_esp",
            "redirect",
            42,
        )])));
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        serve(addr, latest).unwrap();
        let get = |path: &str| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let r = get("/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.contains(
            "sluice_xdp_packets_total{interface=\"ext0\",role=\"outside\",class=\"redirect_esp\",action=\"redirect\"} 42\n"
        ));
        assert!(get("/other").starts_with("HTTP/1.1 404"));
    }
}
