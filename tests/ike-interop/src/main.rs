//! ike-peer: one IKE SA over real UDP sockets (ports 500 and 4500, with the
//! non-ESP marker on 4500), as initiator or responder, for interop tests.
//! Prints the exchanges and the CHILD SA's SPIs, exits 0 once the CHILD SA
//! is up (after lingering to answer retransmissions), 1 on failure or
//! timeout. This is a test driver, not the daemon.
//!
//! usage: ike-peer --role initiator|responder --local IP --remote IP
//!        --id ID --remote-id ID --psk KEY --local-ts CIDR --remote-ts CIDR
//!        [--groups 31,19,20] [--timeout SECONDS] [--retransmit MS,TRIES]
//!        [--then linger|delete|wait-delete|dpd|second-child|half-open]
//!        [--children N]
//!        [--keylog DIR]

use ike_crypto::ke::DhGroup;
use ike_crypto::prf::Prf;
use ike_crypto::sk::{Integ, Suite};
use ike_proto::*;
use ike_wire::NotifyType as ike_wire_notify;
use ring::rand::SecureRandom;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct OsRandom(ring::rand::SystemRandom);

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        if self.0.fill(buf).is_err() {
            eprintln!("ike-peer: OS random number generator failed");
            std::process::exit(1);
        }
    }
}

fn opt(args: &[String], name: &str) -> Result<String, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| format!("missing {name}"))
}

fn cidr(s: &str) -> Result<Selector, String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("{s}: expected ADDR/LEN"))?;
    let addr: IpAddr = a.parse().map_err(|e| format!("{s}: {e}"))?;
    let len: u8 = l.parse().map_err(|e| format!("{s}: {e}"))?;
    Ok(Selector::subnet(addr, len))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ike-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = opt(&args, "--role")?;
    let local: IpAddr = opt(&args, "--local")?
        .parse()
        .map_err(|e| format!("--local: {e}"))?;
    let remote: IpAddr = opt(&args, "--remote")?
        .parse()
        .map_err(|e| format!("--remote: {e}"))?;
    let timeout = Duration::from_secs(
        opt(&args, "--timeout")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(20),
    );
    let cfg = Config {
        local_id: Identity::Fqdn(opt(&args, "--id")?),
        remote_id: Identity::Fqdn(opt(&args, "--remote-id")?),
        local_auth: LocalAuth::Psk(zeroize::Zeroizing::new(opt(&args, "--psk")?.into_bytes())),
        remote_auth: RemoteAuth::Psk(zeroize::Zeroizing::new(opt(&args, "--psk")?.into_bytes())),
        send_cert: SendCert::IfAsked,
        // strongSwan's default selection between two peers.
        ike: IkeProposal {
            suite: Suite::AesCbc {
                key_len: 16,
                integ: Integ::HmacSha256_128,
            },
            prf: Prf::HmacSha256,
            groups: match opt(&args, "--groups") {
                Ok(g) => g
                    .split(',')
                    .map(|x| {
                        x.parse()
                            .ok()
                            .and_then(DhGroup::from_id)
                            .ok_or(format!("--groups: unsupported {x}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Err(_) => vec![DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Ecp384],
            },
        },
        esp: vec![EspProposal::AesGcm16 { bits: 128 }],
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![cidr(&opt(&args, "--local-ts")?)?],
            remote_ts: vec![cidr(&opt(&args, "--remote-ts")?)?],
        }],
        pfs: None,
        retransmit: match opt(&args, "--retransmit") {
            // "INITIAL_MS,TRIES", shorter than the defaults for tests.
            Ok(r) => {
                let (a, b) = r.split_once(',').ok_or("--retransmit INITIAL_MS,TRIES")?;
                Retransmit {
                    initial: Duration::from_millis(a.parse().map_err(|_| "--retransmit")?),
                    max: Duration::from_secs(64),
                    tries: b.parse().map_err(|_| "--retransmit")?,
                }
            }
            Err(_) => Retransmit::default(),
        },
        fragment_size: Some(1280),
    };
    let s500 =
        UdpSocket::bind(SocketAddr::new(local, 500)).map_err(|e| format!("bind 500: {e}"))?;
    let s4500 =
        UdpSocket::bind(SocketAddr::new(local, 4500)).map_err(|e| format!("bind 4500: {e}"))?;
    for s in [&s500, &s4500] {
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
    }
    let mut rng = OsRandom(ring::rand::SystemRandom::new());
    let start = Instant::now();
    let mut sa = match role.as_str() {
        "initiator" => Some(
            IkeSa::initiate(
                cfg.clone(),
                SocketAddr::new(local, 500),
                SocketAddr::new(remote, 500),
                start,
                &mut rng,
            )
            .map_err(|e| e.to_string())?,
        ),
        "responder" => None,
        r => return Err(format!("--role {r}: initiator or responder")),
    };
    let mut done_at: Option<Instant> = None;
    // What to do once the CHILD SA is up: linger (answer retransmissions for
    // 2 s), delete (delete the IKE SA after 1 s), wait-delete (until the peer
    // deletes it), dpd (liveness checks every second until the peer is dead),
    // half-open (exit 0 as soon as IKE_SA_INIT is answered, sending no
    // IKE_AUTH: the responder keeps a half-open SA).
    let then = opt(&args, "--then").unwrap_or_else(|_| "linger".into());
    let mut acted = false;
    // CHILD SAs to see before lingering ends (the peer may add some).
    let mut want_children: usize = opt(&args, "--children")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let mut children = 0usize;
    // Opt-in key log for Wireshark (secrets: mode 0600).
    let keylog = opt(&args, "--keylog").ok().map(std::path::PathBuf::from);
    let mut next_dpd = start;
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now - start > timeout {
            return Err(format!("no CHILD SA within {timeout:?}"));
        }
        if let Some(t) = done_at {
            match then.as_str() {
                "linger" if now - t > Duration::from_secs(2) && children >= want_children => {
                    return Ok(())
                }
                "second-child" if !acted => {
                    if let Some(s) = sa.as_mut() {
                        println!("requesting a second CHILD SA (CREATE_CHILD_SA)");
                        s.create_child(
                            now,
                            cfg.children[0].local_ts.clone(),
                            cfg.children[0].remote_ts.clone(),
                            &mut rng,
                        )
                        .map_err(|e| e.to_string())?;
                    }
                    acted = true;
                    want_children = 2;
                }
                "second-child" if children >= 2 && now - t > Duration::from_secs(2) => {
                    return Ok(())
                }
                "delete" if now - t > Duration::from_secs(1) && !acted => {
                    if let Some(s) = sa.as_mut() {
                        println!("deleting the IKE SA");
                        s.delete(now, &mut rng).map_err(|e| e.to_string())?;
                    }
                    acted = true;
                }
                "dpd" if now >= next_dpd => {
                    if let Some(s) = sa.as_mut() {
                        if s.poll_timeout().is_none() {
                            s.check_liveness(now, &mut rng).map_err(|e| e.to_string())?;
                        }
                    }
                    next_dpd = now + Duration::from_secs(1);
                }
                _ => {}
            }
        }
        for (sock, nat_t) in [(&s500, false), (&s4500, true)] {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let mut data = &buf[..n];
            if nat_t {
                match data.get(..4) {
                    Some([0, 0, 0, 0]) => data = &data[4..],
                    _ => continue, // ESP or a keepalive: not for the IKE core
                }
            }
            println!("recv {n} bytes from {from}");
            match sa.as_mut() {
                Some(s) => s.handle(now, from, data, &mut rng),
                None => {
                    let s = IkeSa::accept(
                        cfg.clone(),
                        sock.local_addr().map_err(|e| e.to_string())?,
                        from,
                        now,
                        data,
                        &mut rng,
                    )
                    .map_err(|e| e.to_string())?;
                    sa = Some(s);
                }
            }
        }
        let Some(s) = sa.as_mut() else { continue };
        let mut forget = false;
        let mut rekeyed = None;
        s.handle_timeout(now);
        if then == "half-open" && s.state() == State::AuthSent {
            // Leave the responder's IKE SA half-open: no IKE_AUTH.
            println!("IKE_SA_INIT answered: stopping before IKE_AUTH");
            return Ok(());
        }
        while let Some(t) = s.poll_transmit() {
            let (sock, bytes) = if t.dst.port() == 500 {
                (&s500, t.data)
            } else {
                let mut v = vec![0u8; 4];
                v.extend_from_slice(&t.data);
                (&s4500, v)
            };
            println!("send {} bytes to {}", bytes.len(), t.dst);
            sock.send_to(&bytes, t.dst)
                .map_err(|e| format!("send to {}: {e}", t.dst))?;
        }
        while let Some(e) = s.poll_event() {
            match e {
                Event::Established { spi_i, spi_r } => {
                    println!(
                        "IKE_SA established: SPIs {spi_i:016x}_i {spi_r:016x}_r, NAT-T {}",
                        s.nat_detected()
                    );
                    if let (Some(dir), Some(line)) = (&keylog, s.wireshark_ikev2_line()) {
                        ike_proto::keylog::append(dir, "ikev2_decryption_table", &[line])?;
                    }
                }
                Event::ChildInstalled(c) => {
                    println!(
                        "CHILD_SA installed: SPIs {:08x}_i {:08x}_o TS {:?} === {:?}",
                        c.spi_in, c.spi_out, c.local_ts, c.remote_ts
                    );
                    children += 1;
                    if done_at.is_none() || children >= want_children {
                        done_at = Some(now);
                    }
                    if let Some(dir) = &keylog {
                        let (l, r) = s.addresses();
                        ike_proto::keylog::append(
                            dir,
                            "esp_sa",
                            &c.wireshark_esp_sa_lines(l.ip(), r.ip()),
                        )?;
                    }
                }
                // A responder keeps no state for an IKE_SA_INIT it refused
                // with INVALID_KE_PAYLOAD or COOKIE (RFC 7296 §1.2, §2.6):
                // the initiator comes back with a new request.
                Event::Failed {
                    reason,
                    notify: Some(n),
                } if s.role() == Role::Responder
                    && (n == ike_wire_notify::INVALID_KE_PAYLOAD
                        || n == ike_wire_notify::COOKIE) =>
                {
                    println!("{reason}: waiting for the initiator's retry");
                    forget = true;
                }
                Event::Failed { reason, notify } => {
                    return Err(format!("failed: {reason} ({notify:?})"));
                }
                Event::PeerDead if then == "dpd" => {
                    println!(
                        "peer dead: no answer to the liveness check after the retransmissions"
                    );
                    return Ok(());
                }
                Event::PeerDead => return Err("peer dead".into()),
                Event::Dropped(why) => println!("dropped a datagram: {why}"),
                Event::ChildDeleted { spi_in, spi_out } => {
                    println!("CHILD_SA deleted: SPIs {spi_in:08x}_i {spi_out:08x}_o");
                }
                Event::Deleted => {
                    println!("IKE_SA deleted");
                    if then == "wait-delete" || then == "delete" {
                        return Ok(());
                    }
                }
                Event::Alive => println!("liveness check answered"),
                Event::LivenessAnswered => println!("answered the peer's liveness check"),
                Event::Log(l) => println!("{l}"),
                Event::IkeRekeyed(next) => {
                    // A test driver: carry on with the new IKE SA only (the
                    // old one's Delete from the peer then finds no SA).
                    let (i, r) = next.spis();
                    println!("IKE_SA rekeyed: now SPIs {i:016x}_i {r:016x}_r");
                    rekeyed = Some(next);
                }
                Event::IkeRedundant(extra) => {
                    let (i, r) = extra.spis();
                    println!("redundant IKE_SA {i:016x}_i {r:016x}_r (rekey collision) ignored");
                }
                Event::RekeyFailed { child, notify } => {
                    println!("rekey of {child:?} failed: {notify}");
                }
            }
        }
        if let Some(next) = rekeyed {
            sa = Some(*next);
        }
        if forget {
            sa = None;
        }
    }
}
