//! sluiced: Sluice's IKEv2 daemon.
//!
//! ```text
//! sluiced [--config FILE]          run (embedded default config without --config)
//! sluiced --check-config FILE      validate a configuration and exit
//! sluiced show [--sa-table PATH]   print the SAs installed in the shared table
//! ```
//! Logs go to stderr, filtered by `RUST_LOG` (e.g. `info`,
//! `sluiced=debug`, or per peer: `info,[conn{name=site-a}]=debug`).

mod config;
mod daemon;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let r = match args.first().map(String::as_str) {
        Some("show") => show(&args[1..]),
        Some("--check-config") => args
            .get(1)
            .ok_or_else(|| "--check-config FILE".to_string())
            .and_then(|f| load(Some(f)))
            .map(|(_, c)| println!("configuration OK: {} connection(s)", c.len())),
        Some("--help") | Some("-h") => {
            println!(
                "usage: sluiced [--config FILE] | --check-config FILE | show [--sa-table PATH]"
            );
            Ok(())
        }
        _ => {
            let file = args
                .iter()
                .position(|a| a == "--config")
                .and_then(|i| args.get(i + 1));
            load(file.map(String::as_str)).and_then(|(f, conns)| daemon::run(f, conns))
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluiced: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&str>) -> Result<(config::File, Vec<config::Resolved>), String> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?,
        None => config::DEFAULT_CONFIG.to_string(),
    };
    let f = config::File::parse(&text)?;
    let conns = f.resolve()?;
    Ok((f, conns))
}

fn show(args: &[String]) -> Result<(), String> {
    let path = args
        .iter()
        .position(|a| a == "--sa-table")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || config::Daemon::default().sa_table,
            std::path::PathBuf::from,
        );
    let r = sluice_sa_table::Reader::attach(&path).map_err(|e| e.to_string())?;
    let t = r.register_thread().map_err(|e| e.to_string())?;
    let sas = t.live_sas();
    let policies = t.policies();
    println!("{} SA(s) in {}", sas.len(), path.display());
    let spi_of = |h: sluice_sa_table::SaHandle| {
        sas.iter()
            .find(|(x, _, _)| *x == h)
            .map_or_else(|| "-".to_string(), |(_, c, _)| format!("{:08x}", c.spi))
    };
    let policy_lines: Vec<String> = policies
        .iter()
        .map(|(id, p, sa)| {
            let what = match p.action {
                sluice_sa_table::Action::Protect => {
                    format!("protect, out SPI {}", sa.map_or("none".into(), spi_of))
                }
                sluice_sa_table::Action::Bypass => "bypass".into(),
                sluice_sa_table::Action::Drop => "drop".into(),
            };
            format!(
                "  policy {:<4} {}/{} === {}/{}  {what}",
                id.0, p.src.addr, p.src.len, p.dst.addr, p.dst.len
            )
        })
        .collect();
    for (_, c, n) in sas.iter() {
        let dir = match c.direction {
            sluice_sa_table::Direction::Inbound => "in ",
            sluice_sa_table::Direction::Outbound => "out",
        };
        let encap = c
            .encap
            .map_or(String::from("ESP"), |(s, d)| format!("UDP {s}->{d}"));
        println!(
            "  {dir} SPI {:08x}  {} -> {}  {encap}  encr {} ({} bits)  child {:08x}  {} packets, {} bytes",
            c.spi, c.src, c.dst, c.encr_id, c.key_bits, c.child_id, n.packets, n.bytes
        );
    }
    println!("{} polic(ies)", policy_lines.len());
    for l in policy_lines {
        println!("{l}");
    }
    Ok(())
}
