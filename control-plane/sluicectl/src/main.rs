//! sluicectl: Sluice's command-line client. It talks to sluiced's REST API
//! over HTTPS; `--json` prints the API's JSON for scripts.
//!
//! ```text
//! sluicectl [OPTIONS] COMMAND
//!   list-sas                IKE SAs and CHILD SAs with SPIs and counters
//!   list-conns              connections
//!   load-conns FILE         create or replace connections (TOML [[connection]] or JSON)
//!   unload-conn NAME        delete a connection created through the API
//!   initiate NAME           initiate a connection
//!   terminate --ike ID | --child SPI
//!   rekey --ike ID | --child SPI
//!   list-manual | load-manual FILE | unload-manual NAME   manually keyed SA pairs
//!   stats                   daemon-wide figures, the data plane's workers
//!   version | health
//! ```

use serde_json::Value;
use sluice_api::client::{Client, Trust};
use std::process::ExitCode;

const USAGE: &str =
    "usage: sluicectl [--api URL] [--token-file FILE] [--cacert FILE | --fingerprint SHA256]
                 [--cert FILE --key FILE] [--json] COMMAND
commands:
  list-sas                     IKE SAs and their CHILD SAs: SPIs, selectors, counters
  list-conns                   connections (file and API)
  load-conns FILE              create or replace connections: TOML with [[connection]] tables,
                               or JSON (one object or an array)
  unload-conn NAME             delete a connection created through the API
  initiate NAME                initiate a connection
  terminate --ike ID | --child SPI
  rekey --ike ID | --child SPI
  list-manual                  manually keyed SA pairs
  load-manual FILE             install manually keyed SA pairs (JSON object or array)
  unload-manual NAME           remove one
  stats                        IKE and ESP totals, refusals, the data plane's workers
  version | health
environment: SLUICE_API (default https://127.0.0.1:7443), SLUICE_API_TOKEN_FILE
  (default /var/lib/sluice/api-token), SLUICE_API_CACERT (default /var/lib/sluice/api-cert.pem),
  SLUICE_API_FINGERPRINT";

struct Opts {
    api: String,
    token_file: String,
    trust: Trust,
    cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    json: bool,
    rest: Vec<String>,
}

fn parse(args: Vec<String>) -> Result<Opts, String> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let mut o = Opts {
        api: env("SLUICE_API", "https://127.0.0.1:7443"),
        token_file: env("SLUICE_API_TOKEN_FILE", "/var/lib/sluice/api-token"),
        trust: match std::env::var("SLUICE_API_FINGERPRINT") {
            Ok(f) => Trust::Fingerprint(f),
            Err(_) => {
                Trust::CaFile(env("SLUICE_API_CACERT", "/var/lib/sluice/api-cert.pem").into())
            }
        },
        cert: None,
        json: false,
        rest: Vec::new(),
    };
    let (mut cert, mut key) = (None, None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--api" => o.api = val()?,
            "--token-file" => o.token_file = val()?,
            "--cacert" => o.trust = Trust::CaFile(val()?.into()),
            "--fingerprint" => o.trust = Trust::Fingerprint(val()?),
            "--cert" => cert = Some(std::path::PathBuf::from(val()?)),
            "--key" => key = Some(std::path::PathBuf::from(val()?)),
            "--json" => o.json = true,
            "-h" | "--help" => return Err(String::new()),
            _ => {
                o.rest.push(a);
                o.rest.extend(it.by_ref());
            }
        }
    }
    o.cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse(std::env::args().skip(1).collect()) {
        Ok(o) if !o.rest.is_empty() => o,
        Ok(_) | Err(_) if std::env::args().len() <= 1 => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sluicectl: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
        Ok(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluicectl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Opts) -> Result<(), String> {
    // A token file the user cannot read is fine with a client certificate.
    let token = match std::fs::read_to_string(&o.token_file) {
        Ok(t) => Some(t.trim().to_string()),
        Err(e) if o.cert.is_none() => {
            return Err(format!("{}: {e} (or use --cert/--key)", o.token_file))
        }
        Err(_) => None,
    };
    let c = Client::new(&o.api, token, &o.trust, o.cert.clone())?;
    let arg = |i: usize, what: &str| {
        o.rest
            .get(i)
            .cloned()
            .ok_or_else(|| format!("{} needs {what}", o.rest[0]))
    };
    let call = |m: &str, p: &str, b: Option<&Value>| -> Result<Value, String> {
        let r = c.request(m, p, b)?;
        if r.status >= 400 {
            let msg = r.json()["error"]
                .as_str()
                .map_or_else(|| r.body.clone(), str::to_string);
            return Err(format!("{m} {p}: {} {msg}", r.status));
        }
        Ok(r.json())
    };
    let out = |v: &Value, human: &dyn Fn(&Value) -> String| {
        if o.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{}", human(v));
        }
    };
    let target = |i: usize| -> Result<String, String> {
        match (o.rest.get(i).map(String::as_str), o.rest.get(i + 1)) {
            (Some("--ike"), Some(id)) => Ok(format!("/v1/ike-sas/{id}")),
            (Some("--child"), Some(spi)) => Ok(format!("/v1/child-sas/{spi}")),
            _ => Err(format!("{} --ike ID | --child SPI", o.rest[0])),
        }
    };
    match o.rest[0].as_str() {
        "list-sas" | "sas" => out(&call("GET", "/v1/ike-sas", None)?, &show_sas),
        "list-conns" | "conns" => out(&call("GET", "/v1/connections", None)?, &show_conns),
        "load-conns" => {
            for c in read_objects(&arg(1, "a file")?, "connection")? {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let exists = !name.is_empty()
                    && call("GET", &format!("/v1/connections/{name}"), None).is_ok();
                let v = if exists {
                    call("PUT", &format!("/v1/connections/{name}"), Some(&c))?
                } else {
                    call("POST", "/v1/connections", Some(&c))?
                };
                out(&v, &|_| {
                    format!(
                        "{} connection {name}\n",
                        if exists { "replaced" } else { "loaded" }
                    )
                });
            }
        }
        "unload-conn" => {
            let name = arg(1, "a connection name")?;
            call("DELETE", &format!("/v1/connections/{name}"), None)?;
            if !o.json {
                println!("unloaded connection {name}");
            }
        }
        "initiate" => {
            let name = arg(1, "a connection name")?;
            let v = call("POST", &format!("/v1/connections/{name}/initiate"), None)?;
            out(&v, &done);
        }
        "terminate" => out(
            &call("POST", &format!("{}/terminate", target(1)?), None)?,
            &done,
        ),
        "rekey" => out(
            &call("POST", &format!("{}/rekey", target(1)?), None)?,
            &done,
        ),
        "list-manual" => out(&call("GET", "/v1/manual-sas", None)?, &show_manual),
        "load-manual" => {
            for m in read_objects(&arg(1, "a file")?, "manual_sa")? {
                let v = call("POST", "/v1/manual-sas", Some(&m))?;
                out(&v, &|v| {
                    format!(
                        "installed manual SA {}: SPIs {}_i {}_o\n",
                        v["name"].as_str().unwrap_or("?"),
                        v["spi_in"].as_str().unwrap_or("?"),
                        v["spi_out"].as_str().unwrap_or("?")
                    )
                });
            }
        }
        "unload-manual" => {
            let name = arg(1, "a name")?;
            call("DELETE", &format!("/v1/manual-sas/{name}"), None)?;
            if !o.json {
                println!("removed manual SA {name}");
            }
        }
        "stats" => out(&call("GET", "/v1/stats", None)?, &show_stats),
        "version" => out(&call("GET", "/v1/version", None)?, &|v| {
            format!(
                "sluiced {} (API {})\n",
                v["version"].as_str().unwrap_or("?"),
                v["api"].as_str().unwrap_or("?")
            )
        }),
        "health" => out(&call("GET", "/v1/health", None)?, &|v| {
            format!("{}\n", v["status"].as_str().unwrap_or("?"))
        }),
        other => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    Ok(())
}

/// Objects from a file: TOML (`[[key]]` tables) or JSON (an object or an
/// array of them); `-` is standard input.
fn read_objects(path: &str, key: &str) -> Result<Vec<Value>, String> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| e.to_string())?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?
    };
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(json_err) => {
            let t: toml::Value = toml::from_str(&text)
                .map_err(|e| format!("{path}: neither JSON ({json_err}) nor TOML ({e})"))?;
            let t = serde_json::to_value(t).map_err(|e| e.to_string())?;
            t.get(key)
                .cloned()
                .ok_or_else(|| format!("{path}: no [[{key}]] table"))?
        }
    };
    Ok(match v {
        Value::Array(a) => a,
        o => vec![o],
    })
}

fn done(v: &Value) -> String {
    format!("{}\n", v["message"].as_str().unwrap_or("done"))
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn drops(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k}={}", num(n))).collect();
            format!(", dropped {}", parts.join(" "))
        }
        _ => String::new(),
    }
}

fn strs(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn secs(v: &Value) -> String {
    match v.as_u64() {
        Some(s) if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        Some(s) if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        Some(s) => format!("{s}s"),
        None => "-".into(),
    }
}

/// As `swanctl --list-sas`: one block per IKE SA, its CHILD SAs below.
fn show_sas(v: &Value) -> String {
    let mut s = String::new();
    let sas = v.as_array().cloned().unwrap_or_default();
    if sas.is_empty() {
        s.push_str("no IKE SAs\n");
    }
    for ike in sas {
        s += &format!(
            "{}: #{}, {}, IKEv2, {}_i{} {}_r{}\n  local  {}\n  remote {}{}\n  {}\n  established {} ago{}\n",
            ike["connection"].as_str().unwrap_or("?"),
            num(&ike["id"]),
            ike["state"].as_str().unwrap_or("?").to_uppercase(),
            ike["spi_i"].as_str().unwrap_or("?"),
            if ike["role"] == "initiator" { "*" } else { "" },
            ike["spi_r"].as_str().unwrap_or("?"),
            if ike["role"] == "responder" { "*" } else { "" },
            ike["local"].as_str().unwrap_or("?"),
            ike["remote"].as_str().unwrap_or("?"),
            if ike["nat"] == true { " (NAT)" } else { "" },
            ike["proposal"].as_str().unwrap_or("?"),
            secs(&ike["age_seconds"]),
            match ike.get("rekey_in_seconds") {
                Some(r) => format!(", rekeying in {}", secs(r)),
                None => String::new(),
            },
        );
        for c in ike["children"].as_array().cloned().unwrap_or_default() {
            s += &format!(
                "  CHILD_SA {}_i {}_o, {}{}{}, installed {} ago{}{}\n    in  {:>12} bytes {:>10} packets{}\n    out {:>12} bytes {:>10} packets{}\n    local  {}\n    remote {}\n",
                c["spi_in"].as_str().unwrap_or("?"),
                c["spi_out"].as_str().unwrap_or("?"),
                c["esp"].as_str().unwrap_or("?"),
                if c["udp_encap"] == true { ", UDP-encapsulated" } else { "" },
                if c["replaced"] == true { ", REKEYED" } else { "" },
                secs(&c["age_seconds"]),
                match c.get("rekey_in_seconds") {
                    Some(r) => format!(", rekeying in {}", secs(r)),
                    None => String::new(),
                },
                match c.get("expires_in_seconds") {
                    Some(r) => format!(", expires in {}", secs(r)),
                    None => String::new(),
                },
                num(&c["inbound"]["bytes"]),
                num(&c["inbound"]["packets"]),
                drops(&c["inbound"]["drops"]),
                num(&c["outbound"]["bytes"]),
                num(&c["outbound"]["packets"]),
                drops(&c["outbound"]["drops"]),
                strs(&c["local_ts"]),
                strs(&c["remote_ts"]),
            );
        }
    }
    s
}

fn show_conns(v: &Value) -> String {
    let mut s = String::new();
    for c in v.as_array().cloned().unwrap_or_default() {
        let k = &c["connection"];
        s += &format!(
            "{}: {} === {}, {} ({}), {} IKE SA(s)\n  local  {}\n  remote {}\n",
            k["name"].as_str().unwrap_or("?"),
            k["local_addr"].as_str().unwrap_or("?"),
            k["remote_addr"].as_str().unwrap_or("?"),
            k["start_action"].as_str().unwrap_or("none"),
            c["source"].as_str().unwrap_or("?"),
            num(&c["ike_sas"]),
            k["local_id"].as_str().unwrap_or("(certificate subject)"),
            k["remote_id"].as_str().unwrap_or("?"),
        );
        for ch in k["child"].as_array().cloned().unwrap_or_default() {
            s += &format!(
                "  {}: {} === {}\n",
                ch["name"].as_str().unwrap_or("?"),
                strs(&ch["local_ts"]),
                strs(&ch["remote_ts"])
            );
        }
    }
    if s.is_empty() {
        s.push_str("no connections\n");
    }
    s
}

fn show_manual(v: &Value) -> String {
    let mut s = String::new();
    for m in v.as_array().cloned().unwrap_or_default() {
        s += &format!(
            "{}: {} === {}, {}, SPIs {}_i {}_o\n  in  {} packets, {} bytes{}\n  out {} packets, {} bytes{}\n  local  {}\n  remote {}\n",
            m["name"].as_str().unwrap_or("?"),
            m["local_addr"].as_str().unwrap_or("?"),
            m["remote_addr"].as_str().unwrap_or("?"),
            m["esp"].as_str().unwrap_or("?"),
            m["spi_in"].as_str().unwrap_or("?"),
            m["spi_out"].as_str().unwrap_or("?"),
            num(&m["inbound"]["packets"]),
            num(&m["inbound"]["bytes"]),
            drops(&m["inbound"]["drops"]),
            num(&m["outbound"]["packets"]),
            num(&m["outbound"]["bytes"]),
            drops(&m["outbound"]["drops"]),
            strs(&m["local_ts"]),
            strs(&m["remote_ts"]),
        );
    }
    if s.is_empty() {
        s.push_str("no manual SAs\n");
    }
    s
}

fn kv(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k}={}", num(n)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn show_stats(v: &Value) -> String {
    let mut s = format!(
        "uptime {}, {} connection(s), {} CHILD SA(s), {} manual SA pair(s)\n\
         IKE SAs:        {}\nrekeys:         {}\nretransmits:    {}\n\
         INIT refused:   {}\nESP packets:    {}\nESP bytes:      {}\nESP drops:      {}\n",
        secs(&v["uptime_seconds"]),
        num(&v["connections"]),
        num(&v["child_sas"]),
        num(&v["manual_sas"]),
        kv(&v["ike_sas"]),
        kv(&v["rekeys"]),
        num(&v["retransmits"]),
        kv(&v["init_refused"]),
        kv(&v["esp_packets"]),
        kv(&v["esp_bytes"]),
        kv(&v["esp_drops"]),
    );
    for w in v["workers"].as_array().cloned().unwrap_or_default() {
        let busy = num(&w["busy_polls"]);
        let polls = busy + num(&w["idle_polls"]);
        s += &format!(
            "worker {}: rx {} tx {} packets, {} bursts ({:.1} per burst), busy {:.1}%{}\n",
            num(&w["worker"]),
            num(&w["rx_packets"]),
            num(&w["tx_packets"]),
            num(&w["bursts"]),
            num(&w["rx_packets"]) as f64 / num(&w["bursts"]).max(1) as f64,
            100.0 * busy as f64 / polls.max(1) as f64,
            drops(&w["drops"]),
        );
    }
    s
}
