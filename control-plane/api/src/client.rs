//! A small blocking HTTPS client for the API: what sluicectl and the
//! integration tests use. One TLS connection per request (a CLI makes
//! few); the server is trusted through a CA file or a pinned SHA-256
//! fingerprint (the one sluiced logs for its generated certificate).

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the server's certificate is trusted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// A CA (or the server's own self-signed certificate), PEM.
    CaFile(PathBuf),
    /// The server certificate's SHA-256 fingerprint, hex with or without
    /// colons, optionally prefixed `SHA256:`.
    Fingerprint(String),
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body (JSON for every /v1 resource).
    pub body: String,
}

impl Response {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The client.
pub struct Client {
    rt: tokio::runtime::Runtime,
    tls: tokio_rustls::TlsConnector,
    authority: String,
    server_name: ServerName<'static>,
    token: Option<zeroize::Zeroizing<String>>,
    timeout: Duration,
}

#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = crate::server::fingerprint(end_entity).replace(':', "");
        if got.eq_ignore_ascii_case(&self.fingerprint) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint SHA256:{got} is not the pinned one"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl Client {
    /// A client for `url` (`https://HOST:PORT`), with a bearer token
    /// and/or a client certificate and key (PEM).
    pub fn new(
        url: &str,
        token: Option<String>,
        trust: &Trust,
        client_cert: Option<(PathBuf, PathBuf)>,
    ) -> Result<Client, String> {
        let authority = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url:?}: the API is https://HOST:PORT"))?
            .trim_end_matches('/')
            .to_string();
        let host = match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => return Err(format!("{url:?}: give the port (https://HOST:PORT)")),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{host:?}: {e}"))?
            .to_owned();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match trust {
            Trust::CaFile(p) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in
                    CertificateDer::pem_file_iter(p).map_err(|e| format!("{}: {e}", p.display()))?
                {
                    roots
                        .add(c.map_err(|e| format!("{}: {e}", p.display()))?)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                }
                builder.with_root_certificates(roots)
            }
            Trust::Fingerprint(f) => {
                let f = f
                    .trim_start_matches("SHA256:")
                    .trim_start_matches("sha256:")
                    .replace(':', "");
                if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("a fingerprint is 32 bytes of SHA-256 in hex".into());
                }
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Pinned {
                        fingerprint: f,
                        provider,
                    }))
            }
        };
        let mut cfg = match client_cert {
            Some((c, k)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c)
                    .map_err(|e| format!("{}: {e}", c.display()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: {e}", c.display()))?;
                let key = PrivateKeyDer::from_pem_file(&k)
                    .map_err(|e| format!("{}: {e}", k.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            rt,
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            authority,
            server_name,
            token: token.map(zeroize::Zeroizing::new),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sends one request; `body` is sent as JSON.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, String> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, bytes, body.is_some())
    }

    /// Sends raw bytes as the body (tests of malformed input).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        json: bool,
    ) -> Result<Response, String> {
        let fut = async {
            let tcp = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| format!("connect {}: {e}", self.authority))?;
            let tls = self
                .tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", self.authority))?;
            let (mut tx, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.authority)
                .header(
                    "user-agent",
                    concat!("sluicectl/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(t) = &self.token {
                req = req.header("authorization", format!("Bearer {}", t.as_str()));
            }
            if json {
                req = req.header("content-type", "application/json");
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), 64 << 20)
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes();
            Ok(Response {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        self.rt.block_on(async {
            tokio::time::timeout(self.timeout, fut)
                .await
                .map_err(|_| format!("no answer from {} in 30 s", self.authority))?
        })
    }
}
