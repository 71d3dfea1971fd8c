//! The HTTPS server: TLS, authentication, the /v1 routes, the metrics
//! listener. It runs on its own thread with its own (single-threaded)
//! tokio runtime and never touches the daemon's state: every request
//! becomes a [`Command`] sent to the daemon's event loop, which answers on
//! a one-shot channel. The daemon stays single-threaded and a slow client
//! cannot stall IKE.

use crate::model::{
    ChildSaInfo, Connection, ConnectionInfo, Done, ErrorBody, Health, IkeSaInfo, ManualSa,
    ManualSaInfo, Stats, Version,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use utoipa::OpenApi;
use zeroize::Zeroizing;

/// What the API asks of the daemon.
#[derive(Debug)]
pub enum Command {
    /// Is the event loop alive?
    Health,
    /// Every connection.
    ListConnections,
    /// One connection.
    GetConnection(String),
    /// Validate, persist and load a new connection.
    CreateConnection(Box<Connection>),
    /// Replace a connection of the API (its IKE SAs are closed and, with
    /// `start_action = initiate`, set up again).
    ReplaceConnection(String, Box<Connection>),
    /// Delete a connection of the API and close its IKE SAs.
    DeleteConnection(String),
    /// Initiate a connection.
    Initiate(String),
    /// Every IKE SA.
    ListIkeSas,
    /// One IKE SA.
    GetIkeSa(u64),
    /// Rekey an IKE SA.
    RekeyIkeSa(u64),
    /// Delete an IKE SA (and its CHILD SAs) with the peer.
    TerminateIkeSa(u64),
    /// Every CHILD SA.
    ListChildSas,
    /// Rekey the CHILD SA with this inbound SPI.
    RekeyChildSa(u32),
    /// Delete the CHILD SA with this inbound SPI with the peer.
    TerminateChildSa(u32),
    /// Every manually keyed SA pair.
    ListManualSas,
    /// One of them.
    GetManualSa(String),
    /// Install a manually keyed SA pair.
    CreateManualSa(Box<ManualSa>),
    /// Remove one.
    DeleteManualSa(String),
    /// Daemon-wide figures.
    Stats,
    /// The Prometheus exposition.
    Metrics,
}

/// A successful answer.
#[derive(Debug)]
pub enum Answer {
    /// 200 with this body.
    Ok(serde_json::Value),
    /// 201 with this body.
    Created(serde_json::Value),
    /// 202: the action has started (IKE exchanges take time).
    Accepted(serde_json::Value),
    /// 204.
    NoContent,
    /// 200, Prometheus text format.
    Metrics(String),
}

/// An error with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What was wrong, for people.
    pub message: String,
}

impl ApiError {
    /// 400: the request is wrong.
    pub fn bad_request(m: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: m.into(),
        }
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            message: m.into(),
        }
    }
    /// 409: the request conflicts with the state.
    pub fn conflict(m: impl Into<String>) -> Self {
        ApiError {
            status: 409,
            message: m.into(),
        }
    }
    /// 500: the daemon failed to do something it should be able to.
    pub fn internal(m: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            message: m.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

/// The daemon's answer to a [`Command`].
pub type Reply = Result<Answer, ApiError>;

/// A command and where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// What is asked.
    pub command: Command,
    reply: oneshot::Sender<Reply>,
}

impl Request {
    /// Answers (a client that went away is not an error).
    pub fn answer(self, r: Reply) {
        let _ = self.reply.send(r);
    }
}

/// How the daemon is reached from handlers.
#[derive(Clone)]
struct AppState {
    daemon: SyncSender<Request>,
    token: Arc<Zeroizing<String>>,
    /// The last answers to the unauthenticated commands (health, metrics)
    /// and when they came: reused for a second, so a flood of them costs
    /// the daemon one answer per second.
    cache: Arc<std::sync::Mutex<Vec<CacheEntry>>>,
}

/// A cached answer: its key, when it came, what it was.
type CacheEntry = (&'static str, std::time::Instant, Cached);

/// A cached answer.
#[derive(Clone)]
enum Cached {
    Json(serde_json::Value),
    Metrics(String),
}

/// How long an unauthenticated answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// Connections served at once on the metrics listener.
const MAX_METRICS_CONNECTIONS: usize = 16;
/// A connection is closed after this long, whatever it does (a client
/// reconnects; sluicectl makes one request per connection).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Requests waiting for the daemon, at most; more get 503.
const QUEUE: usize = 64;
/// How long a handler waits for the daemon.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

impl AppState {
    /// As [`Self::ask`] for a command anyone may send, answered from a
    /// cache at most a second old (errors are not cached).
    async fn ask_cached(&self, key: &'static str, command: Command) -> Response {
        let now = std::time::Instant::now();
        let hit = self.cache.lock().ok().and_then(|c| {
            c.iter()
                .find(|(k, t, _)| *k == key && now.duration_since(*t) < CACHE_FOR)
                .map(|(_, _, r)| r.clone())
        });
        let answer = match hit {
            Some(a) => a,
            None => {
                let a = match self.ask_raw(command).await {
                    Ok(Answer::Ok(v)) => Cached::Json(v),
                    Ok(Answer::Metrics(t)) => Cached::Metrics(t),
                    Ok(other) => return reply(Ok(other)),
                    Err(e) => return reply(Err(e)),
                };
                if let Ok(mut c) = self.cache.lock() {
                    c.retain(|(k, _, _)| *k != key);
                    c.push((key, now, a.clone()));
                }
                a
            }
        };
        reply(Ok(match answer {
            Cached::Json(v) => Answer::Ok(v),
            Cached::Metrics(t) => Answer::Metrics(t),
        }))
    }

    async fn ask(&self, command: Command) -> Response {
        reply(self.ask_raw(command).await)
    }

    async fn ask_raw(&self, command: Command) -> Reply {
        let (tx, rx) = oneshot::channel();
        match self.daemon.try_send(Request { command, reply: tx }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError {
                    status: 503,
                    message: "sluiced is busy: too many requests queued; retry".into(),
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError {
                    status: 503,
                    message: "sluiced is stopping".into(),
                })
            }
        }
        match tokio::time::timeout(DAEMON_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ApiError {
                status: 503,
                message: "sluiced is stopping".into(),
            }),
            Err(_) => Err(ApiError {
                status: 504,
                message: "sluiced did not answer in 10 s".into(),
            }),
        }
    }
}

fn error(status: u16, message: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        s,
        Json(ErrorBody {
            error: message.to_string(),
        }),
    )
        .into_response()
}

fn reply(r: Reply) -> Response {
    match r {
        Ok(Answer::Ok(v)) => (StatusCode::OK, Json(v)).into_response(),
        Ok(Answer::Created(v)) => (StatusCode::CREATED, Json(v)).into_response(),
        Ok(Answer::Accepted(v)) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Ok(Answer::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Ok(Answer::Metrics(text)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => error(e.status, &e.message),
    }
}

/// A JSON body: too large gets 413, unreadable 400, wrong 400, all with a
/// message saying where.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        let s = e.status();
        if s == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: 413,
                message: "request body too large".into(),
            }
        } else {
            ApiError {
                status: s.as_u16(),
                message: format!("request body: {}", e.body_text()),
            }
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

fn spi32(s: &str) -> Result<u32, ApiError> {
    let h = s.trim_start_matches("0x");
    u32::from_str_radix(h, 16)
        .ok()
        .filter(|_| !h.is_empty() && h.len() <= 8)
        .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not a SPI (8 hex digits)")))
}

// --- handlers -----------------------------------------------------------

/// Liveness: 200 while sluiced's event loop answers (no authentication).
#[utoipa::path(get, path = "/v1/health", tag = "daemon",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn health(State(s): State<AppState>) -> Response {
    s.ask_cached("health", Command::Health).await
}

/// sluiced's version and the API's.
#[utoipa::path(get, path = "/v1/version", tag = "daemon", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = Version), (status = 401, body = ErrorBody)))]
async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").to_string(),
        api: "v1".to_string(),
    })
}

/// Daemon-wide figures: IKE SAs by state, rekeys, refusals, ESP totals,
/// the data plane's workers.
#[utoipa::path(get, path = "/v1/stats", tag = "daemon", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = Stats), (status = 401, body = ErrorBody)))]
async fn stats(State(s): State<AppState>) -> Response {
    s.ask(Command::Stats).await
}

/// Every connection, from the configuration file and from the API.
#[utoipa::path(get, path = "/v1/connections", tag = "connections", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = Vec<ConnectionInfo>), (status = 401, body = ErrorBody)))]
async fn list_connections(State(s): State<AppState>) -> Response {
    s.ask(Command::ListConnections).await
}

/// Creates a connection: validated, persisted, loaded at once (and
/// initiated when `start_action` says so).
#[utoipa::path(post, path = "/v1/connections", tag = "connections", security(("bearer" = []), ("mtls" = [])),
    request_body = Connection,
    responses((status = 201, body = ConnectionInfo), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn create_connection(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match json_body::<Connection>(body) {
        Ok(c) => s.ask(Command::CreateConnection(Box::new(c))).await,
        Err(e) => e.into_response(),
    }
}

/// One connection.
#[utoipa::path(get, path = "/v1/connections/{name}", tag = "connections", security(("bearer" = []), ("mtls" = [])),
    params(("name" = String, Path, description = "connection name")),
    responses((status = 200, body = ConnectionInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_connection(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    s.ask(Command::GetConnection(name)).await
}

/// Replaces a connection created through the API: its IKE SAs are closed,
/// the new definition is persisted and loaded.
#[utoipa::path(put, path = "/v1/connections/{name}", tag = "connections", security(("bearer" = []), ("mtls" = [])),
    params(("name" = String, Path, description = "connection name")),
    request_body = Connection,
    responses((status = 200, body = ConnectionInfo), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn replace_connection(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match json_body::<Connection>(body) {
        Ok(c) => s.ask(Command::ReplaceConnection(name, Box::new(c))).await,
        Err(e) => e.into_response(),
    }
}

/// Deletes a connection created through the API; its IKE SAs are deleted
/// with the peer.
#[utoipa::path(delete, path = "/v1/connections/{name}", tag = "connections", security(("bearer" = []), ("mtls" = [])),
    params(("name" = String, Path, description = "connection name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_connection(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    s.ask(Command::DeleteConnection(name)).await
}

/// Initiates a connection (a new IKE SA).
#[utoipa::path(post, path = "/v1/connections/{name}/initiate", tag = "connections", security(("bearer" = []), ("mtls" = [])),
    params(("name" = String, Path, description = "connection name")),
    responses((status = 202, body = Done), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn initiate(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    s.ask(Command::Initiate(name)).await
}

/// Every IKE SA with its CHILD SAs.
#[utoipa::path(get, path = "/v1/ike-sas", tag = "sas", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = Vec<IkeSaInfo>), (status = 401, body = ErrorBody)))]
async fn list_ike_sas(State(s): State<AppState>) -> Response {
    s.ask(Command::ListIkeSas).await
}

fn ike_id(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not an IKE SA id (a number)")))
}

/// One IKE SA.
#[utoipa::path(get, path = "/v1/ike-sas/{id}", tag = "sas", security(("bearer" = []), ("mtls" = [])),
    params(("id" = u64, Path, description = "IKE SA id")),
    responses((status = 200, body = IkeSaInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_ike_sa(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match ike_id(&id) {
        Ok(id) => s.ask(Command::GetIkeSa(id)).await,
        Err(e) => e.into_response(),
    }
}

/// Rekeys an IKE SA (CREATE_CHILD_SA, RFC 7296 §2.18).
#[utoipa::path(post, path = "/v1/ike-sas/{id}/rekey", tag = "sas", security(("bearer" = []), ("mtls" = [])),
    params(("id" = u64, Path, description = "IKE SA id")),
    responses((status = 202, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rekey_ike_sa(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match ike_id(&id) {
        Ok(id) => s.ask(Command::RekeyIkeSa(id)).await,
        Err(e) => e.into_response(),
    }
}

/// Deletes an IKE SA and its CHILD SAs with the peer.
#[utoipa::path(post, path = "/v1/ike-sas/{id}/terminate", tag = "sas", security(("bearer" = []), ("mtls" = [])),
    params(("id" = u64, Path, description = "IKE SA id")),
    responses((status = 202, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn terminate_ike_sa(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match ike_id(&id) {
        Ok(id) => s.ask(Command::TerminateIkeSa(id)).await,
        Err(e) => e.into_response(),
    }
}

/// Every CHILD SA, with counters.
#[utoipa::path(get, path = "/v1/child-sas", tag = "sas", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = Vec<ChildSaInfo>), (status = 401, body = ErrorBody)))]
async fn list_child_sas(State(s): State<AppState>) -> Response {
    s.ask(Command::ListChildSas).await
}

/// Rekeys a CHILD SA, named by its inbound SPI.
#[utoipa::path(post, path = "/v1/child-sas/{spi}/rekey", tag = "sas", security(("bearer" = []), ("mtls" = [])),
    params(("spi" = String, Path, description = "inbound SPI, hex")),
    responses((status = 202, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rekey_child_sa(State(s): State<AppState>, Path(spi): Path<String>) -> Response {
    match spi32(&spi) {
        Ok(spi) => s.ask(Command::RekeyChildSa(spi)).await,
        Err(e) => e.into_response(),
    }
}

/// Deletes a CHILD SA with the peer.
#[utoipa::path(post, path = "/v1/child-sas/{spi}/terminate", tag = "sas", security(("bearer" = []), ("mtls" = [])),
    params(("spi" = String, Path, description = "inbound SPI, hex")),
    responses((status = 202, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn terminate_child_sa(State(s): State<AppState>, Path(spi): Path<String>) -> Response {
    match spi32(&spi) {
        Ok(spi) => s.ask(Command::TerminateChildSa(spi)).await,
        Err(e) => e.into_response(),
    }
}

/// Every manually keyed SA pair, with counters.
#[utoipa::path(get, path = "/v1/manual-sas", tag = "manual", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = Vec<ManualSaInfo>), (status = 401, body = ErrorBody)))]
async fn list_manual(State(s): State<AppState>) -> Response {
    s.ask(Command::ListManualSas).await
}

/// Installs a manually keyed ESP SA pair and its policies straight into
/// the data plane (persisted like API connections).
#[utoipa::path(post, path = "/v1/manual-sas", tag = "manual", security(("bearer" = []), ("mtls" = [])),
    request_body = ManualSa,
    responses((status = 201, body = ManualSaInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn create_manual(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    match json_body::<ManualSa>(body) {
        Ok(m) => s.ask(Command::CreateManualSa(Box::new(m))).await,
        Err(e) => e.into_response(),
    }
}

/// One manually keyed SA pair.
#[utoipa::path(get, path = "/v1/manual-sas/{name}", tag = "manual", security(("bearer" = []), ("mtls" = [])),
    params(("name" = String, Path, description = "its name")),
    responses((status = 200, body = ManualSaInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_manual(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    s.ask(Command::GetManualSa(name)).await
}

/// Removes a manually keyed SA pair and its policies.
#[utoipa::path(delete, path = "/v1/manual-sas/{name}", tag = "manual", security(("bearer" = []), ("mtls" = [])),
    params(("name" = String, Path, description = "its name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_manual(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    s.ask(Command::DeleteManualSa(name)).await
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "daemon",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "mtls",
            SecurityScheme::MutualTls {
                description: Some("a client certificate signed by [api] client_ca".into()),
                extensions: None,
            },
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice API", version = "1",
        description = "Provisioning and status of the Sluice IPsec appliance. Authenticate with \
            `Authorization: Bearer <token>` (the token file) or a client certificate signed by \
            the configured client CA. Errors are `{\"error\": \"...\"}` with a 4xx or 5xx status."),
    paths(health, version, stats, list_connections, create_connection, get_connection,
        replace_connection, delete_connection, initiate, list_ike_sas, get_ike_sa, rekey_ike_sa,
        terminate_ike_sa, list_child_sas, rekey_child_sa, terminate_child_sa, list_manual,
        create_manual, get_manual, delete_manual, openapi_json),
    modifiers(&Security)
)]
struct ApiDoc;

/// The OpenAPI document, generated from the handlers and the model.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Whether the connection presented a client certificate the client CA
/// vouches for (set per TLS connection).
#[derive(Clone, Copy)]
struct ClientCert(bool);

async fn auth(State(s): State<AppState>, req: axum::extract::Request, next: Next) -> Response {
    let by_cert = req.extensions().get::<ClientCert>().is_some_and(|c| c.0);
    let by_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| {
            use subtle::ConstantTimeEq;
            t.len() == s.token.len() && bool::from(t.as_bytes().ct_eq(s.token.as_bytes()))
        });
    if by_cert || by_token {
        return next.run(req).await;
    }
    debug!(path = %req.uri().path(), "API request without valid credentials");
    let mut r = error(
        401,
        "authentication required: Authorization: Bearer <token> or a client certificate",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sluice\""),
    );
    r
}

/// The /v1 router (exposed for tests that drive it without TLS).
fn router(state: AppState, max_body: usize) -> Router {
    let protected = Router::new()
        .route("/v1/version", get(version))
        .route("/v1/stats", get(stats))
        .route(
            "/v1/connections",
            get(list_connections).post(create_connection),
        )
        .route(
            "/v1/connections/{name}",
            get(get_connection)
                .put(replace_connection)
                .delete(delete_connection),
        )
        .route("/v1/connections/{name}/initiate", post(initiate))
        .route("/v1/ike-sas", get(list_ike_sas))
        .route("/v1/ike-sas/{id}", get(get_ike_sa))
        .route("/v1/ike-sas/{id}/rekey", post(rekey_ike_sa))
        .route("/v1/ike-sas/{id}/terminate", post(terminate_ike_sa))
        .route("/v1/child-sas", get(list_child_sas))
        .route("/v1/child-sas/{spi}/rekey", post(rekey_child_sa))
        .route("/v1/child-sas/{spi}/terminate", post(terminate_child_sa))
        .route("/v1/manual-sas", get(list_manual).post(create_manual))
        .route(
            "/v1/manual-sas/{name}",
            get(get_manual).delete(delete_manual),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi_json))
        .merge(protected)
        .fallback(|| async { error(404, "no such resource (the API is under /v1)") })
        .method_not_allowed_fallback(|| async { error(405, "method not allowed here") })
        .layer(DefaultBodyLimit::max(max_body))
        // A declared length over the limit is refused before the body is
        // read: no 100 Continue, so the client does not upload it in vain.
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: Next| async move {
                let declared = req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|n| n > max_body as u64) {
                    return error(413, "request body too large");
                }
                next.run(req).await
            },
        ))
        .with_state(state)
}

// --- configuration ------------------------------------------------------

/// The API's settings, ready to serve.
pub struct ApiSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The bearer token.
    pub token: Zeroizing<String>,
    /// TLS, with the client verifier when mTLS is on.
    pub tls: Arc<rustls::ServerConfig>,
    /// Largest request body.
    pub max_body: usize,
}

/// Reads the bearer token, or creates one (32 random bytes, hex, mode
/// 0600) when the file does not exist. A token file others can read is
/// refused.
pub fn load_or_create_token(path: &FsPath) -> Result<Zeroizing<String>, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(m) => {
            if m.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "{}: the API token file must not be readable by group or others (chmod 600)",
                    path.display()
                ));
            }
            let t = Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
            );
            let t = Zeroizing::new(t.trim().to_string());
            if t.len() < 16 || t.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(format!(
                    "{}: the API token must be at least 16 printable characters",
                    path.display()
                ));
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = Zeroizing::new([0u8; 32]);
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw[..])
                .map_err(|_| "the OS random number generator failed".to_string())?;
            let t: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            let t = Zeroizing::new(t);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            std::io::Write::write_all(&mut f, format!("{}\n", t.as_str()).as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            info!(file = %path.display(), "generated a new API token (read it from the file)");
            Ok(t)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Where the API's certificate comes from.
pub struct TlsFiles {
    /// Certificate chain (PEM); with `key`.
    pub cert: Option<PathBuf>,
    /// Its key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: Option<PathBuf>,
    /// Client CA for mTLS.
    pub client_ca: Option<PathBuf>,
    /// Where a self-signed certificate is generated when none is given.
    pub state_dir: PathBuf,
    /// Names for the generated certificate (the listen address at least).
    pub names: Vec<String>,
}

/// SHA-256 fingerprint of a DER certificate, `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The server's TLS configuration: the given certificate, or a self-signed
/// one generated into the state directory on first run (its fingerprint
/// logged so clients can pin it); mTLS when a client CA is given.
pub fn tls_config(f: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert_path, key_path) = match (&f.cert, &f.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let c = f.state_dir.join("api-cert.pem");
            let k = f.state_dir.join("api-key.pem");
            if !c.exists() || !k.exists() {
                generate_self_signed(&c, &k, &f.names)?;
            }
            (c, k)
        }
        _ => return Err("[api] tls_cert and tls_key go together".into()),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let Some(leaf) = certs.first() else {
        return Err(format!("{}: no certificate", cert_path.display()));
    };
    info!(
        cert = %cert_path.display(),
        fingerprint = %format!("SHA256:{}", fingerprint(leaf)),
        "API server certificate"
    );
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &f.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no CA certificate", ca.display()));
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client CA: {e}"))?;
            info!(ca = %ca.display(), "API accepts client certificates (mTLS)");
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn generate_self_signed(cert: &FsPath, key: &FsPath, names: &[String]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut names = names.to_vec();
    names.push("localhost".into());
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let key_pem = Zeroizing::new(ck.signing_key.serialize_pem());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    std::io::Write::write_all(&mut f, key_pem.as_bytes())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    std::fs::write(cert, ck.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    warn!(
        cert = %cert.display(),
        "no [api] tls_cert configured: generated a self-signed certificate; clients must trust or pin it"
    );
    Ok(())
}

// --- serving ------------------------------------------------------------

/// Starts the API (and the metrics listener) on their own thread. Binding
/// happens here, so an address in use is an error at start-up. Returns
/// the queue the daemon answers from.
pub fn spawn(
    api: Option<ApiSettings>,
    metrics: Option<SocketAddr>,
) -> Result<Receiver<Request>, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let api_listener = match &api {
        Some(a) => Some(bind(a.listen)?),
        None => None,
    };
    let metrics_listener = match metrics {
        Some(m) => Some(bind(m)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("API runtime: {e}"))?;
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                if let (Some(a), Some(l)) = (api, api_listener) {
                    let state = AppState {
                        daemon: tx.clone(),
                        token: Arc::new(a.token),
                        cache: Default::default(),
                    };
                    let app = router(state, a.max_body);
                    tasks.spawn(serve_tls(l, a.tls, app));
                }
                if let Some(l) = metrics_listener {
                    tasks.spawn(serve_metrics(l, tx.clone()));
                }
                drop(tx);
                while tasks.join_next().await.is_some() {}
            });
        })
        .map_err(|e| format!("API thread: {e}"))?;
    Ok(rx)
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

async fn serve_tls(l: std::net::TcpListener, tls: Arc<rustls::ServerConfig>, app: Router) {
    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
        warn!("API listener unusable");
        return;
    };
    if let Ok(a) = l.local_addr() {
        info!(addr = %a, "API listening (HTTPS)");
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("API accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, "API TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "API TLS handshake timed out");
                    return;
                }
            };
            let cert = ClientCert(tls.get_ref().1.peer_certificates().is_some());
            serve_http(tls, app, cert).await;
        });
    }
}

async fn serve_metrics(l: std::net::TcpListener, daemon: SyncSender<Request>) {
    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
        warn!("metrics listener unusable");
        return;
    };
    if let Ok(a) = l.local_addr() {
        info!(addr = %a, "metrics listening (HTTP, /metrics)");
    }
    let state = AppState {
        daemon,
        token: Arc::new(Zeroizing::new(String::new())),
        cache: Default::default(),
    };
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                s.ask_cached("metrics", Command::Metrics).await
            }),
        )
        .fallback(|| async { error(404, "metrics are at /metrics") })
        .with_state(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_http(stream, app, ClientCert(false)).await;
        });
    }
}

/// Serves HTTP/1.1 on one connection: headers within 10 s, at most 64 KiB
/// of them, the connection closed after [`CONNECTION_LIFETIME`].
async fn serve_http<I>(io: I, app: Router, cert: ClientCert)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(cert);
        let mut app = app.clone();
        async move { tower::Service::call(&mut app, req).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation in the OpenAPI document is routed: without
    /// credentials each answers 401 (or, when open, 200), never the 404 or
    /// 405 of a path or method the router does not know.
    #[test]
    fn every_documented_operation_is_routed() {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Request>(8);
        std::thread::spawn(move || {
            while let Ok(r) = rx.recv() {
                r.answer(Ok(Answer::Ok(serde_json::json!({"status": "ok"}))));
            }
        });
        let state = AppState {
            daemon: tx,
            token: Arc::new(Zeroizing::new("t".repeat(32))),
            cache: Default::default(),
        };
        let app = router(state, 1024);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let doc = openapi();
        let mut n = 0;
        for (path, item) in &doc.paths.paths {
            for (m, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
            ] {
                if op.is_none() {
                    continue;
                }
                n += 1;
                let uri = path
                    .replace("{name}", "x")
                    .replace("{id}", "1")
                    .replace("{spi}", "c0ffee01");
                let req = axum::http::Request::builder()
                    .method(m)
                    .uri(&uri)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let mut app = app.clone();
                let r = rt.block_on(tower::Service::call(&mut app, req)).unwrap();
                let open = path == "/v1/health" || path == "/v1/openapi.json";
                let want = if open { 200 } else { 401 };
                assert_eq!(r.status().as_u16(), want, "{m} {uri}");
            }
        }
        assert_eq!(n, 21, "operations documented");
        let json = doc.to_pretty_json().unwrap();
        assert!(json.contains("\"bearer\""));
        assert!(json.contains("ManualSa"));
    }

    #[test]
    fn spis_parse_as_hex() {
        assert_eq!(spi32("c0ffee01").ok(), Some(0xc0ff_ee01));
        assert_eq!(spi32("0x1001").ok(), Some(0x1001));
        assert!(spi32("").is_err());
        assert!(spi32("123456789").is_err());
        assert!(spi32("zz").is_err());
    }
}
