//! A real two-process test: a writer process churns SAs (insert, rekey,
//! delete) and is killed and restarted mid-run, while a reader process's
//! threads look SAs up continuously and check every entry they see is
//! self-consistent (every field derived from the same SA id).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sluice_sa_table::*;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const CAP: Capacity = Capacity {
    sas: 4096,
    policies: 512,
};
const POLICIES: u32 = 256;

/// Inbound SPIs cycle through 1..=SPIS; far more than the live SAs (at most
/// ~500 inbound), so consecutive ids never collide.
const SPIS: u64 = 8192;

fn spi_of(id: u64) -> u32 {
    (id % SPIS) as u32 + 1
}

fn dst_of(spi: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc613_0000 | spi))
}

/// Key bytes and salt are derived from the SA id in different ways, so a
/// key paired with another SA's salt is detected.
fn key_of(id: u64) -> Vec<u8> {
    (0..32u64)
        .map(|i| (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 8 * 8)) as u8 ^ i as u8)
        .collect()
}

fn salt_of(id: u64) -> [u8; 4] {
    ((id as u32).wrapping_mul(0x85eb_ca6b) ^ 0x5a5a_5a5a).to_be_bytes()
}

fn config(id: u64, dir: Direction, child: u32) -> SaConfig {
    let spi = spi_of(id);
    let mut key = key_of(id);
    key.extend_from_slice(&salt_of(id));
    SaConfig {
        sa_id: id,
        child_id: child,
        direction: dir,
        spi,
        src: IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (id as u32 & 0xffff))),
        dst: dst_of(spi),
        encap: Some((4500, 4500)),
        encr_id: 20,
        key_bits: 256,
        integ_id: 0,
        encr_key: key,
        integ_key: vec![],
        esn: id % 2 == 0,
        replay_window: 64 + (id % 1000) as u32,
        lifetimes: Lifetimes {
            hard_bytes: id,
            ..Lifetimes::default()
        },
        installed_at: id + 7,
    }
}

/// Every field must come from the same SA id.
fn consistent(c: &SaConfig) -> bool {
    let want = config(c.sa_id, c.direction, c.child_id);
    *c == want
}

fn policy(i: u32) -> Policy {
    Policy::between(
        Prefix::new(IpAddr::V4(Ipv4Addr::new(198, 19, i as u8, 0)), 24).unwrap(),
        Prefix::new(IpAddr::V4(Ipv4Addr::new(198, 18, i as u8, 0)), 24).unwrap(),
        Action::Protect,
    )
}

fn run_writer(path: &Path, ops: u64) {
    let mut w = Writer::create_or_attach(path, CAP).unwrap();
    // Continue after the highest id a previous writer left.
    let first_id = w.live_sas().iter().map(|(_, c)| c.sa_id).max().unwrap_or(0);
    let mut inbound: VecDeque<SaHandle> = VecDeque::new();
    let mut bound: Vec<Option<(PolicyId, Option<SaHandle>)>> = vec![None; POLICIES as usize];
    if w.policies().is_empty() {
        for i in 0..POLICIES {
            bound[i as usize] = Some((w.add_policy(policy(i)).unwrap(), None));
        }
        w.commit().unwrap();
    } else {
        // Restarted: recover what the previous writer left.
        for (id, p) in w.policies() {
            let i = u32::from(match p.src.addr {
                IpAddr::V4(a) => a.octets()[2],
                IpAddr::V6(_) => 0,
            });
            bound[i as usize] = Some((id, None));
        }
        for (h, c) in w.live_sas() {
            match c.direction {
                Direction::Inbound => inbound.push_back(h),
                Direction::Outbound => {
                    let slot = bound.get_mut(c.child_id as usize);
                    if let Some(Some((pid, b))) = slot {
                        if b.is_none() {
                            *b = Some(h);
                            w.bind_policy(*pid, Some(h)).unwrap();
                        } else {
                            w.delete_sa(h).unwrap();
                        }
                    }
                }
            }
        }
    }
    let mut id = first_id;
    for op in 0..ops {
        id += 1;
        match op % 3 {
            0 => inbound.push_back(w.insert_sa(&config(id, Direction::Inbound, 0)).unwrap()),
            1 => {
                let i = (id % u64::from(POLICIES)) as usize;
                let (pid, old) = bound[i].unwrap();
                let cfg = config(id, Direction::Outbound, i as u32);
                let h = match old {
                    Some(old) => w.replace_sa(old, &cfg).unwrap(),
                    None => {
                        let h = w.insert_sa(&cfg).unwrap();
                        w.bind_policy(pid, Some(h)).unwrap();
                        h
                    }
                };
                bound[i] = Some((pid, Some(h)));
            }
            _ => {
                if inbound.len() > 500 {
                    w.delete_sa(inbound.pop_front().unwrap()).unwrap();
                }
            }
        }
        if op % 64 == 0 {
            w.reclaim();
            println!("progress {op}");
        }
    }
    println!("progress {ops}");
    println!("writer done: last id {id}, retired {}", w.retired_slots());
}

fn run_reader(path: &Path, stop: &Path) {
    let start = Instant::now();
    let r = loop {
        match Reader::attach(path) {
            Ok(r) => break r,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("attach: {e}"),
        }
    };
    let results: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let r = r.clone();
                s.spawn(move || {
                    let mut th = r.register_thread().unwrap();
                    let (mut lookups, mut hits, mut bad) = (0u64, 0u64, 0u64);
                    let mut x = 0x1234_5678u64 + t;
                    let no_drops = [0u64; DROP_REASONS];
                    while !stop.exists() && start.elapsed() < Duration::from_secs(60) {
                        for _ in 0..256 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let spi = ((x >> 8) % SPIS) as u32 + 1;
                            lookups += 1;
                            if let Some(s) = th.lookup_inbound(spi, dst_of(spi)) {
                                if let Some(c) = s.config() {
                                    hits += 1;
                                    if !consistent(&c) || c.spi != spi {
                                        bad += 1;
                                    }
                                    // The key-schedule copy: key and salt of
                                    // the same SA as the config.
                                    if let Some(k) = s.keys() {
                                        if k.encr_key().get(..32) != Some(&key_of(c.sa_id)[..])
                                            || k.salt(4) != salt_of(c.sa_id)
                                        {
                                            bad += 1;
                                        }
                                    }
                                }
                                // Data-plane writes racing the writer's resets.
                                s.counters().add(1, 100, &no_drops);
                            }
                            let i = ((x >> 20) % u64::from(POLICIES)) as u8;
                            let f = FlowKey {
                                src: IpAddr::V4(Ipv4Addr::new(198, 19, i, 1)),
                                dst: IpAddr::V4(Ipv4Addr::new(198, 18, i, 1)),
                                proto: 1,
                                src_port: 0,
                                dst_port: 0,
                            };
                            lookups += 1;
                            if let Some(PolicyMatch::Protect(_, h)) = th.lookup_outbound(&f) {
                                if let Some(c) = th.sa(h).and_then(|s| s.config()) {
                                    hits += 1;
                                    if !consistent(&c) || c.child_id != u32::from(i) {
                                        bad += 1;
                                    }
                                }
                                if let Some(s) = th.sa(h) {
                                    s.hot().seq.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        th.quiescent();
                    }
                    (lookups, hits, bad)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (l, h, b) = results
        .iter()
        .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2));
    println!("reader: lookups={l} hits={h} bad={b}");
}

/// The child roles: run only when the parent test starts this binary with
/// SLUICE_SAT_ROLE set.
#[test]
#[ignore = "child process of two_processes_churn_while_reading"]
fn two_process_child() {
    let path = PathBuf::from(std::env::var("SLUICE_SAT_PATH").unwrap());
    match std::env::var("SLUICE_SAT_ROLE").unwrap().as_str() {
        "writer" => {
            let ops: u64 = std::env::var("SLUICE_SAT_OPS").unwrap().parse().unwrap();
            run_writer(&path, ops);
        }
        "reader" => run_reader(&path, &path.with_extension("stop")),
        r => panic!("unknown role {r}"),
    }
}

fn spawn(role: &str, path: &Path, ops: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "two_process_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SLUICE_SAT_ROLE", role)
        .env("SLUICE_SAT_PATH", path)
        .env("SLUICE_SAT_OPS", ops.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn output(c: Child) -> String {
    let o = c.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "child failed: {s}");
    s
}

#[test]
fn two_processes_churn_while_reading() {
    let path = std::env::temp_dir().join(format!("sluice-sat-2p-{}", std::process::id()));
    let stop = path.with_extension("stop");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&stop);

    // Writer 1 is killed mid-run; writer 2 re-attaches and finishes.
    let t0 = Instant::now();
    let mut w1 = spawn("writer", &path, 10_000_000);
    let reader = spawn("reader", &path, 0);
    std::thread::sleep(Duration::from_millis(1500));
    w1.kill().unwrap();
    let w1_out = output_killed(w1);
    let w1_ops = last_progress(&w1_out);
    assert!(
        w1_ops >= 1_000,
        "writer 1 made too little progress: {w1_ops}"
    );
    // The reader keeps going while no writer runs, then a new one attaches.
    std::thread::sleep(Duration::from_millis(200));
    let w2 = spawn("writer", &path, 20_000);
    let w2_out = output(w2);
    assert!(w2_out.contains("writer done"), "{w2_out}");
    assert_eq!(last_progress(&w2_out), 20_000);
    std::fs::write(&stop, b"").unwrap();
    let r_out = output(reader);
    let line = r_out
        .lines()
        .find_map(|l| l.find("reader:").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no reader summary in: {r_out}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    eprintln!(
        "writer 1: {w1_ops} ops before SIGKILL, writer 2: 20000 ops; {line}; {:?}",
        t0.elapsed()
    );
    assert_eq!(field("bad="), 0, "a reader saw a torn or mixed SA");
    assert!(field("lookups=") > 10_000);
    assert!(field("hits=") > 1_000, "the reader must actually see SAs");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&stop);
}

fn last_progress(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.rsplit("progress ").next()?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

fn output_killed(c: Child) -> String {
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}
