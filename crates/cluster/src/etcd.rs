//! A small synchronous etcd v3 client over the JSON gRPC gateway (`POST /v3/kv/...`).
//!
//! etcd 3.4 serves the gateway under both `/v3/` and the deprecated `/v3beta/`; we use `/v3/`.
//! Keys and values travel base64-encoded, int64 fields as JSON strings, and proto3 JSON
//! leaves out default values (`"succeeded": false` is simply absent).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

/// gRPC status codes (as the gateway reports them in `code`) worth another endpoint or a retry.
const RETRYABLE_GRPC: &[i64] = &[1, 4, 8, 10, 14];

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// Every endpoint failed until the deadline; the request may or may not have been applied.
    #[error("etcd unavailable after {attempts} attempts on {endpoints}: {last}")]
    Unavailable {
        endpoints: String,
        attempts: u32,
        last: String,
    },
    /// The server refused the request itself (bad argument, permission, ...).
    #[error("etcd {endpoint} rejected {path}: {msg} (grpc code {code})")]
    Rejected {
        endpoint: String,
        path: String,
        code: i64,
        msg: String,
    },
    #[error("etcd {endpoint} sent an unreadable reply to {path}: {msg}")]
    BadReply {
        endpoint: String,
        path: String,
        msg: String,
    },
    #[error("reading TLS file {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing TLS file {path}: {msg}")]
    TlsParse { path: String, msg: String },
    #[error("no etcd endpoints configured")]
    NoEndpoints,
}

/// TLS files for `https://` endpoints (etcd's `--cert-file` style names).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host:port`, tried in turn.
    pub endpoints: Vec<String>,
    pub tls: TlsFiles,
    /// TCP (and TLS) connect limit per attempt.
    pub dial_timeout: Duration,
    /// Limit for one request on one endpoint; must exceed an election stall (~3 s).
    pub request_timeout: Duration,
}

/// One key-value pair as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl Kv {
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

/// What a comparison looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Create,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpResult {
    Equal,
    Less,
}

/// `key` (or every key in `[key, range_end)`; an empty range compares as revision 0).
#[derive(Debug, Clone)]
pub struct Compare {
    pub key: Vec<u8>,
    pub range_end: Option<Vec<u8>>,
    pub target: Target,
    pub result: CmpResult,
    pub revision: i64,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: &str) -> Self {
        Self::create_eq(key, 0)
    }

    pub fn create_eq(key: &str, revision: i64) -> Self {
        Self {
            key: key.as_bytes().to_vec(),
            range_end: None,
            target: Target::Create,
            result: CmpResult::Equal,
            revision,
        }
    }

    pub fn mod_eq(key: &str, revision: i64) -> Self {
        Self {
            target: Target::Mod,
            ..Self::create_eq(key, revision)
        }
    }

    /// No key at all in `[start, end)`.
    pub fn span_empty(start: &str, end: &str) -> Self {
        Self {
            key: start.as_bytes().to_vec(),
            range_end: Some(end.as_bytes().to_vec()),
            target: Target::Create,
            result: CmpResult::Less,
            revision: 1,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "key": B64.encode(&self.key),
            "target": match self.target { Target::Create => "CREATE", Target::Mod => "MOD" },
            "result": match self.result { CmpResult::Equal => "EQUAL", CmpResult::Less => "LESS" },
        });
        let field = match self.target {
            Target::Create => "create_revision",
            Target::Mod => "mod_revision",
        };
        v[field] = Value::String(self.revision.to_string());
        if let Some(end) = &self.range_end {
            v["range_end"] = Value::String(B64.encode(end));
        }
        v
    }
}

/// One operation inside a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// A single key, or `[key, end)`.
    Get {
        key: String,
        end: Option<String>,
        keys_only: bool,
    },
    Delete {
        key: String,
        end: Option<String>,
    },
}

impl Op {
    pub fn put(key: &str, value: Vec<u8>) -> Self {
        Op::Put {
            key: key.to_string(),
            value,
        }
    }
    pub fn get(key: &str) -> Self {
        Op::Get {
            key: key.to_string(),
            end: None,
            keys_only: false,
        }
    }
    /// Every key starting with `prefix`.
    pub fn get_prefix(prefix: &str, keys_only: bool) -> Self {
        Op::Get {
            key: prefix.to_string(),
            end: Some(prefix_end(prefix)),
            keys_only,
        }
    }
    pub fn get_span(start: &str, end: &str, keys_only: bool) -> Self {
        Op::Get {
            key: start.to_string(),
            end: Some(end.to_string()),
            keys_only,
        }
    }
    pub fn delete(key: &str) -> Self {
        Op::Delete {
            key: key.to_string(),
            end: None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Op::Put { key, value } => json!({"request_put": {
                "key": B64.encode(key), "value": B64.encode(value)}}),
            Op::Get {
                key,
                end,
                keys_only,
            } => {
                let mut r = json!({"key": B64.encode(key)});
                if let Some(end) = end {
                    r["range_end"] = Value::String(B64.encode(end));
                }
                if *keys_only {
                    r["keys_only"] = Value::Bool(true);
                }
                json!({ "request_range": r })
            }
            Op::Delete { key, end } => {
                let mut r = json!({"key": B64.encode(key)});
                if let Some(end) = end {
                    r["range_end"] = Value::String(B64.encode(end));
                }
                json!({ "request_delete_range": r })
            }
        }
    }
}

/// The end of the key range holding every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            // Our keys are ASCII, so the result stays valid UTF-8.
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    "\0".to_string()
}

/// A transaction's outcome: which branch ran and the `Get` results of that branch, in order.
#[derive(Debug, Clone, Default)]
pub struct TxnReply {
    pub succeeded: bool,
    /// One entry per `Get` op of the branch that ran (puts and deletes leave none).
    pub ranges: Vec<Vec<Kv>>,
    /// The store revision after the transaction.
    pub revision: i64,
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    create_revision: Option<String>,
    #[serde(default)]
    mod_revision: Option<String>,
}

fn rev(s: &Option<String>) -> i64 {
    s.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn decode_kvs(v: Option<&Value>) -> Result<Vec<Kv>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let raw: Vec<RawKv> = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    raw.into_iter()
        .map(|r| {
            Ok(Kv {
                key: B64.decode(r.key.as_bytes()).map_err(|e| e.to_string())?,
                value: B64.decode(r.value.as_bytes()).map_err(|e| e.to_string())?,
                create_revision: rev(&r.create_revision),
                mod_revision: rev(&r.mod_revision),
            })
        })
        .collect()
}

/// The client: an HTTP agent and the endpoint list; safe to share between threads.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    endpoints: Arc<Vec<String>>,
    /// The endpoint that answered last; the next call starts there.
    current: Arc<AtomicUsize>,
    request_timeout: Duration,
    /// Requests answered (round trips), for benchmarks.
    calls: Arc<AtomicU64>,
}

fn read_file(path: &str) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile {
        path: path.to_string(),
        source,
    })
}

fn tls_config(files: &TlsFiles) -> Result<Option<ureq::tls::TlsConfig>, EtcdError> {
    use ureq::tls::{
        parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig,
    };
    if files.ca.is_none() && files.cert.is_none() && files.key.is_none() {
        return Ok(None);
    }
    let mut b = TlsConfig::builder();
    if let Some(ca) = &files.ca {
        let pem = read_file(ca)?;
        let mut roots = Vec::new();
        for item in parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => roots.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(EtcdError::TlsParse {
                        path: ca.clone(),
                        msg: e.to_string(),
                    })
                }
            }
        }
        b = b.root_certs(RootCerts::Specific(Arc::new(roots)));
    }
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let pem = read_file(cert)?;
            let chain: Vec<Certificate<'static>> = parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let key_pem = read_file(key)?;
            let pk = PrivateKey::from_pem(&key_pem).map_err(|e| EtcdError::TlsParse {
                path: key.clone(),
                msg: e.to_string(),
            })?;
            b = b.client_cert(Some(ClientCert::new_with_certs(&chain, pk)));
        }
        (None, None) => {}
        _ => {
            return Err(EtcdError::TlsParse {
                path: files.cert.clone().or(files.key.clone()).unwrap_or_default(),
                msg: "certFile and keyFile go together".into(),
            })
        }
    }
    Ok(Some(b.build()))
}

/// Why one attempt on one endpoint failed.
enum AttemptError {
    /// Try another endpoint (or again later).
    Retry(String),
    Fatal(EtcdError),
}

impl Client {
    pub fn new(cfg: &ClientConfig) -> Result<Self, EtcdError> {
        if cfg.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let mut b = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(cfg.dial_timeout))
            .timeout_global(Some(cfg.request_timeout))
            .max_idle_connections_per_host(64)
            .user_agent("macvnet-cluster");
        if let Some(tls) = tls_config(&cfg.tls)? {
            b = b.tls_config(tls);
        }
        let agent: ureq::Agent = b.build().into();
        let endpoints: Vec<String> = cfg
            .endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect();
        // Spread processes over the members; a failed one is skipped in turn.
        let start = rand::random::<usize>() % endpoints.len();
        Ok(Self {
            agent,
            endpoints: Arc::new(endpoints),
            current: Arc::new(AtomicUsize::new(start)),
            request_timeout: cfg.request_timeout,
            calls: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Requests that got an answer so far (clones share the count).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn attempt(
        &self,
        endpoint: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<Value, AttemptError> {
        let url = format!("{endpoint}{path}");
        let resp = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("content-type", "application/json")
            .send(body);
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => return Err(AttemptError::Retry(format!("{endpoint}: {e}"))),
        };
        let status = resp.status().as_u16();
        let text = match resp.body_mut().read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return Err(AttemptError::Retry(format!(
                    "{endpoint}: reading reply: {e}"
                )))
            }
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) if status >= 500 => {
                return Err(AttemptError::Retry(format!(
                    "{endpoint}: HTTP {status}: {e}"
                )))
            }
            Err(e) => {
                return Err(AttemptError::Fatal(EtcdError::BadReply {
                    endpoint: endpoint.to_string(),
                    path: path.to_string(),
                    msg: format!("HTTP {status}: {e}: {text:.200}"),
                }))
            }
        };
        if status == 200 && value.get("error").is_none() {
            return Ok(value);
        }
        let code = value.get("code").and_then(Value::as_i64).unwrap_or(2);
        let msg = value
            .get("message")
            .or_else(|| value.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if RETRYABLE_GRPC.contains(&code) || status >= 500 && code == 2 {
            Err(AttemptError::Retry(format!(
                "{endpoint}: {msg} (grpc code {code})"
            )))
        } else {
            Err(AttemptError::Fatal(EtcdError::Rejected {
                endpoint: endpoint.to_string(),
                path: path.to_string(),
                code,
                msg,
            }))
        }
    }

    /// POST `body` to `path`, trying each endpoint in turn with backoff until `deadline`.
    fn call(&self, path: &str, body: &Value, deadline: Instant) -> Result<Value, EtcdError> {
        let body = body.to_string();
        let n = self.endpoints.len();
        let mut attempts = 0u32;
        let mut last = String::from("deadline already passed");
        let mut backoff = Duration::from_millis(20);
        loop {
            for _ in 0..n {
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.unavailable(attempts, last));
                }
                let idx = self.current.load(Ordering::Relaxed) % n;
                let endpoint = self.endpoints.get(idx).map(String::as_str).unwrap_or("");
                let timeout = self.request_timeout.min(deadline - now);
                attempts += 1;
                match self.attempt(endpoint, path, &body, timeout) {
                    Ok(v) => {
                        self.calls.fetch_add(1, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Err(AttemptError::Fatal(e)) => return Err(e),
                    Err(AttemptError::Retry(msg)) => {
                        tracing::debug!(%msg, path, "etcd attempt failed; next endpoint");
                        last = msg;
                        let _ = self.current.compare_exchange(
                            idx,
                            (idx + 1) % n,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
            // Every endpoint failed: wait a little (an election takes a few seconds).
            let now = Instant::now();
            if now >= deadline {
                return Err(self.unavailable(attempts, last));
            }
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn unavailable(&self, attempts: u32, last: String) -> EtcdError {
        EtcdError::Unavailable {
            endpoints: self.endpoints.join(","),
            attempts,
            last,
        }
    }

    /// A transaction: if every compare holds run `success`, else `failure`.
    pub fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
        deadline: Instant,
    ) -> Result<TxnReply, EtcdError> {
        let body = json!({
            "compare": compare.iter().map(Compare::to_json).collect::<Vec<_>>(),
            "success": success.iter().map(Op::to_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(Op::to_json).collect::<Vec<_>>(),
        });
        let path = "/v3/kv/txn";
        let v = self.call(path, &body, deadline)?;
        let succeeded = v.get("succeeded").and_then(Value::as_bool).unwrap_or(false);
        let revision = v
            .pointer("/header/revision")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut ranges = Vec::new();
        for r in v
            .get("responses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(rr) = r.get("response_range") {
                ranges.push(
                    decode_kvs(rr.get("kvs")).map_err(|msg| EtcdError::BadReply {
                        endpoint: String::new(),
                        path: path.to_string(),
                        msg,
                    })?,
                );
            }
        }
        Ok(TxnReply {
            succeeded,
            ranges,
            revision,
        })
    }

    /// Read-only: several gets at one revision.
    pub fn read(&self, ops: &[Op], deadline: Instant) -> Result<Vec<Vec<Kv>>, EtcdError> {
        Ok(self.txn(&[], ops, &[], deadline)?.ranges)
    }

    /// Every key under `prefix`.
    pub fn get_prefix(&self, prefix: &str, deadline: Instant) -> Result<Vec<Kv>, EtcdError> {
        Ok(self
            .read(&[Op::get_prefix(prefix, false)], deadline)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Delete every key under `prefix`; returns how many went.
    pub fn delete_prefix(&self, prefix: &str, deadline: Instant) -> Result<u64, EtcdError> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
        });
        let v = self.call("/v3/kv/deleterange", &body, deadline)?;
        Ok(v.get("deleted")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Cheap liveness probe (a one-key range).
    pub fn ping(&self, deadline: Instant) -> Result<(), EtcdError> {
        self.read(&[Op::get("/")], deadline).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/a/b/"), "/a/b0");
        assert_eq!(prefix_end("a"), "b");
    }

    #[test]
    fn compare_json_shape() {
        let c = Compare::span_empty("a", "b").to_json();
        assert_eq!(c["target"], "CREATE");
        assert_eq!(c["result"], "LESS");
        assert_eq!(c["create_revision"], "1");
        assert_eq!(c["range_end"], B64.encode("b"));
    }
}
