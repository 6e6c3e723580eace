//! A mock PDS + authorization server + PLC directory + handle resolver, in one actix-web server
//! on 127.0.0.1:0. It checks what a real atproto PDS checks (DPoP proofs with nonces, PKCE,
//! client assertions, DPoP-bound tokens) and can be told to misbehave.
#![allow(dead_code, clippy::result_large_err)] // a test mock: handlers return ready responses

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::{Jwk, JwkSet};
use josekit::jws::ES256;
use josekit::jwt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const AS_NONCE: &str = "as-nonce-1";
pub const PDS_NONCE: &str = "pds-nonce-1";

/// Ways the authorization server metadata can be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    WrongIssuer,
    NoPar,
    NoS256,
    NoEs256,
    NoIssParameter,
    NoTokenEndpoint,
    NoAtprotoScope,
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Put a foreign `iss` on the authorization response.
    pub wrong_iss: bool,
    /// Leave `iss` out of the authorization response.
    pub omit_iss: bool,
    /// Token response `sub` (default: the DID the login hint names, or the main account).
    pub sub_override: Option<String>,
    /// Protected-resource metadata names this AS instead of ourselves.
    pub prm_as_override: Option<String>,
    pub hostile: Option<Hostile>,
    /// The user refuses at the authorization page.
    pub access_denied: bool,
    /// When set: a confidential client whose assertions must verify against this JWKS.
    pub client_jwks: Option<Value>,
    /// Scope granted in token responses.
    pub granted_scope: String,
    /// Grant what the PAR asked for instead of `granted_scope` (as a real PDS does when the
    /// user approves everything).
    pub grant_as_requested: bool,
    /// Leave `scope` out of token responses.
    pub omit_scope: bool,
    /// `expires_in` of token responses.
    pub expires_in: u64,
    /// Profile record value; `None` answers `RecordNotFound`.
    pub profile: Option<Value>,
    pub email: Option<String>,
    /// Answer every AS request with `use_dpop_nonce` and a new nonce.
    pub always_challenge: bool,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub endpoint: String,
    /// The `nonce` claim of the DPoP proof, if a proof was sent.
    pub dpop_nonce: Option<String>,
    pub status: u16,
    /// `"private_key_jwt"` or `"none"` for AS endpoints.
    pub client_auth: Option<String>,
    pub form: HashMap<String, String>,
}

/// An XRPC call that reached the mock PDS past its DPoP and token checks (proxy tests).
#[derive(Debug, Clone)]
pub struct XrpcReceived {
    pub nsid: String,
    pub method: String,
    pub query: String,
    pub content_type: Option<String>,
    pub atproto_proxy: Option<String>,
    pub body: Vec<u8>,
}

impl XrpcReceived {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Debug, Clone)]
struct ParRequest {
    client_id: String,
    state: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    jkt: String,
    login_hint: Option<String>,
}

#[derive(Debug, Clone)]
struct Grant {
    sub: String,
    jkt: String,
    scope: String,
}

pub struct MockState {
    pub base: String,
    pub config: Mutex<MockConfig>,
    pub handles: Mutex<HashMap<String, String>>,
    pub docs: Mutex<HashMap<String, Value>>,
    pub log: Mutex<Vec<Recorded>>,
    /// Every request path, including metadata and identity lookups.
    pub hits: Mutex<Vec<String>>,
    pub revoked: Mutex<Vec<String>>,
    par: Mutex<HashMap<String, ParRequest>>,
    codes: Mutex<HashMap<String, (ParRequest, String)>>,
    access: Mutex<HashMap<String, Grant>>,
    refresh: Mutex<HashMap<String, Grant>>,
    seen_jti: Mutex<HashSet<String>>,
    /// How refresh-token grants are answered (upstream refresh tests).
    pub refresh_behaviour: Mutex<RefreshBehaviour>,
    /// Refresh-token grants that reached the token logic (past DPoP and client checks).
    pub refresh_grants: AtomicUsize,
    /// Revocation requests that entered the configured delay.
    pub revokes_delayed: AtomicUsize,
    /// How revocation requests are answered (same knobs: a delay, or a bare error status).
    pub revoke_behaviour: Mutex<RefreshBehaviour>,
    /// XRPC calls received at the generic XRPC endpoints (not getSession, resolveHandle).
    pub xrpc_received: Mutex<Vec<XrpcReceived>>,
    /// Records written through the XRPC endpoints: (repo, collection, rkey) → value.
    pub records: Mutex<HashMap<(String, String, String), Value>>,
}

/// Knobs for the upstream refresh tests; the defaults behave like a real PDS.
#[derive(Debug, Clone)]
pub struct RefreshBehaviour {
    /// Time a refresh-token grant takes before it answers.
    pub delay: std::time::Duration,
    /// Answer refresh-token grants with an error: `invalid_grant` (400) for a status under 500, else a bare `status`.
    pub fail_status: Option<u16>,
}

impl Default for RefreshBehaviour {
    fn default() -> Self {
        Self { delay: std::time::Duration::ZERO, fail_status: None }
    }
}

impl MockState {
    /// The user revokes every grant at the PDS: refresh tokens stop working.
    pub fn refresh_tokens_clear(&self) {
        self.refresh.lock().unwrap().clear();
    }
}

pub struct MockPds {
    pub state: Arc<MockState>,
    pub base: String,
}

pub const ALICE_HANDLE: &str = "alice.test";
pub const ALICE_DID: &str = "did:plc:aliceaaaaaaaaaaaaaaaaaaa";
pub const MALLORY_DID: &str = "did:plc:malloryaaaaaaaaaaaaaaaaa";

pub fn did_doc(did: &str, handle: &str, pds: &str) -> Value {
    json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [format!("at://{handle}")],
        "verificationMethod": [],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}]
    })
}

impl MockPds {
    pub async fn spawn() -> MockPds {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let mut handles = HashMap::new();
        handles.insert(ALICE_HANDLE.to_string(), ALICE_DID.to_string());
        let mut docs = HashMap::new();
        docs.insert(ALICE_DID.to_string(), did_doc(ALICE_DID, ALICE_HANDLE, &base));
        let state = Arc::new(MockState {
            base: base.clone(),
            config: Mutex::new(MockConfig {
                wrong_iss: false,
                omit_iss: false,
                sub_override: None,
                prm_as_override: None,
                hostile: None,
                access_denied: false,
                client_jwks: None,
                granted_scope: "atproto transition:generic transition:email".into(),
                grant_as_requested: false,
                omit_scope: false,
                expires_in: 3600,
                profile: Some(json!({
                    "$type": "app.bsky.actor.profile",
                    "displayName": "Alice Liddell",
                    "avatar": {"$type": "blob", "ref": {"$link": "bafkreialiceavatar"}, "mimeType": "image/png", "size": 42}
                })),
                email: Some("alice@example.com".into()),
                always_challenge: false,
            }),
            handles: Mutex::new(handles),
            docs: Mutex::new(docs),
            log: Mutex::new(Vec::new()),
            hits: Mutex::new(Vec::new()),
            revoked: Mutex::new(Vec::new()),
            par: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            seen_jti: Mutex::new(HashSet::new()),
            refresh_behaviour: Mutex::new(RefreshBehaviour::default()),
            refresh_grants: AtomicUsize::new(0),
            revokes_delayed: AtomicUsize::new(0),
            revoke_behaviour: Mutex::new(RefreshBehaviour::default()),
            xrpc_received: Mutex::new(Vec::new()),
            records: Mutex::new(HashMap::new()),
        });
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    if let Some(st) = req.app_data::<web::Data<Arc<MockState>>>() {
                        st.hits.lock().unwrap().push(req.path().to_string());
                    }
                    srv.call(req)
                })
                .route("/.well-known/oauth-protected-resource", web::get().to(prm))
                .route("/.well-known/oauth-authorization-server", web::get().to(as_meta))
                .route("/oauth/par", web::post().to(par))
                .route("/oauth/authorize", web::get().to(authorize))
                .route("/oauth/token", web::post().to(token))
                .route("/oauth/revoke", web::post().to(revoke))
                .route("/xrpc/com.atproto.repo.getRecord", web::get().to(get_record))
                .route("/xrpc/com.atproto.server.getSession", web::get().to(get_session))
                .route("/xrpc/com.atproto.identity.resolveHandle", web::get().to(resolve_handle))
                .route("/plc/{did}", web::get().to(plc))
                .route("/xrpc/{nsid}", web::post().to(xrpc_procedure))
                .route("/xrpc/{nsid}", web::get().to(xrpc_query))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        MockPds { state, base }
    }

    pub fn configure(&self, f: impl FnOnce(&mut MockConfig)) {
        f(&mut self.state.config.lock().unwrap());
    }

    pub fn add_account(&self, did: &str, handle: &str, doc: Value) {
        self.state.handles.lock().unwrap().insert(handle.into(), did.into());
        self.state.docs.lock().unwrap().insert(did.into(), doc);
    }

    pub fn log(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn log_for(&self, endpoint: &str) -> Vec<Recorded> {
        self.log().into_iter().filter(|r| r.endpoint == endpoint).collect()
    }

    pub fn hits(&self) -> Vec<String> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn revoked(&self) -> Vec<String> {
        self.state.revoked.lock().unwrap().clone()
    }

    pub fn refresh_behaviour(&self, f: impl FnOnce(&mut RefreshBehaviour)) {
        f(&mut self.state.refresh_behaviour.lock().unwrap());
    }

    pub fn revoke_behaviour(&self, f: impl FnOnce(&mut RefreshBehaviour)) {
        f(&mut self.state.revoke_behaviour.lock().unwrap());
    }

    /// Revocation requests that reached the configured delay (and are hanging there or were).
    pub fn revokes_delayed(&self) -> usize {
        self.state.revokes_delayed.load(Ordering::SeqCst)
    }

    /// Refresh-token grants received so far (answered or refused).
    pub fn refresh_grants(&self) -> usize {
        self.state.refresh_grants.load(Ordering::SeqCst)
    }

    /// XRPC calls that reached the PDS (past its DPoP and token checks) for method `nsid`.
    pub fn xrpc_received(&self, nsid: &str) -> Vec<XrpcReceived> {
        self.state.xrpc_received.lock().unwrap().iter().filter(|r| r.nsid == nsid).cloned().collect()
    }

    /// Every XRPC call that reached the PDS's generic endpoints.
    pub fn xrpc_received_all(&self) -> Vec<XrpcReceived> {
        self.state.xrpc_received.lock().unwrap().clone()
    }
}

type State = web::Data<Arc<MockState>>;
type Form = web::Form<HashMap<String, String>>;
type Query = web::Query<HashMap<String, String>>;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn rand_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b))
}

fn b64_sha256(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(s.as_bytes()))
}

fn oauth_err(status: u16, error: &str, desc: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("DPoP-Nonce", AS_NONCE))
        .json(json!({"error": error, "error_description": desc}))
}

fn record(st: &MockState, endpoint: &str, nonce: Option<String>, status: u16, auth: Option<&str>, form: &HashMap<String, String>) {
    st.log.lock().unwrap().push(Recorded {
        endpoint: endpoint.to_string(),
        dpop_nonce: nonce,
        status,
        client_auth: auth.map(str::to_string),
        form: form.clone(),
    });
}

async fn prm(st: State) -> HttpResponse {
    let cfg = st.config.lock().unwrap().clone();
    let as_url = cfg.prm_as_override.unwrap_or_else(|| st.base.clone());
    HttpResponse::Ok().json(json!({
        "resource": st.base,
        "authorization_servers": [as_url],
        "scopes_supported": [],
        "bearer_methods_supported": ["header"],
    }))
}

async fn as_meta(st: State) -> HttpResponse {
    let b = &st.base;
    let mut m = json!({
        "issuer": b,
        "scopes_supported": ["atproto", "transition:email", "transition:generic", "transition:chat.bsky"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "authorization_endpoint": format!("{b}/oauth/authorize"),
        "token_endpoint": format!("{b}/oauth/token"),
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint": format!("{b}/oauth/revoke"),
        "pushed_authorization_request_endpoint": format!("{b}/oauth/par"),
        "require_pushed_authorization_requests": true,
        "dpop_signing_alg_values_supported": ["RS256", "ES256"],
        "client_id_metadata_document_supported": true,
    });
    let hostile = st.config.lock().unwrap().hostile;
    let o = m.as_object_mut().unwrap();
    match hostile {
        Some(Hostile::WrongIssuer) => {
            o.insert("issuer".into(), json!("https://evil.example.com"));
        }
        Some(Hostile::NoPar) => {
            o.remove("pushed_authorization_request_endpoint");
        }
        Some(Hostile::NoS256) => {
            o.insert("code_challenge_methods_supported".into(), json!(["plain"]));
        }
        Some(Hostile::NoEs256) => {
            o.insert("dpop_signing_alg_values_supported".into(), json!(["RS256"]));
        }
        Some(Hostile::NoIssParameter) => {
            o.insert("authorization_response_iss_parameter_supported".into(), json!(false));
        }
        Some(Hostile::NoTokenEndpoint) => {
            o.remove("token_endpoint");
        }
        Some(Hostile::NoAtprotoScope) => {
            o.insert("scopes_supported".into(), json!(["openid"]));
        }
        None => {}
    }
    HttpResponse::Ok().json(m)
}

/// A verified DPoP proof.
struct Proof {
    nonce: Option<String>,
    jkt: String,
}

/// Verify a DPoP proof: signature with its own `jwk` header, `typ`, `htm`, `htu`, `iat`,
/// unique `jti`, and `ath` when an access token is presented.
fn verify_dpop(st: &MockState, req: &HttpRequest, htm: &str, path: &str, access_token: Option<&str>) -> Result<Proof, String> {
    let proof = req.headers().get("DPoP").and_then(|v| v.to_str().ok()).ok_or("no DPoP header")?;
    let header = jwt::decode_header(proof).map_err(|e| e.to_string())?;
    if header.claim("typ") != Some(&json!("dpop+jwt")) {
        return Err("typ is not dpop+jwt".into());
    }
    let jwk_map = header.claim("jwk").and_then(|v| v.as_object()).ok_or("no jwk")?.clone();
    if jwk_map.contains_key("d") {
        return Err("private key in jwk header".into());
    }
    let jwk = Jwk::from_map(jwk_map.clone()).map_err(|e| e.to_string())?;
    let verifier = ES256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?;
    let (payload, _) = jwt::decode_with_verifier(proof, &verifier).map_err(|e| format!("bad signature: {e}"))?;
    if payload.claim("htm") != Some(&json!(htm)) {
        return Err("htm".into());
    }
    let htu = format!("{}{}", st.base, path);
    if payload.claim("htu") != Some(&json!(htu)) {
        return Err(format!("htu {:?} != {htu}", payload.claim("htu")));
    }
    let iat = payload.claim("iat").and_then(|v| v.as_u64()).ok_or("iat")?;
    if iat + 60 < now() || iat > now() + 60 {
        return Err("iat".into());
    }
    let jti = payload.jwt_id().ok_or("jti")?.to_string();
    if !st.seen_jti.lock().unwrap().insert(jti) {
        return Err("jti replay".into());
    }
    if let Some(tok) = access_token {
        if payload.claim("ath") != Some(&json!(b64_sha256(tok))) {
            return Err("ath".into());
        }
    } else if payload.claim("ath").is_some() {
        return Err("unexpected ath".into());
    }
    Ok(Proof {
        nonce: payload.claim("nonce").and_then(|v| v.as_str()).map(str::to_string),
        jkt: format!("{}|{}", jwk_map["x"], jwk_map["y"]),
    })
}

/// Client authentication at an AS endpoint: `private_key_jwt` checked against the configured
/// JWKS, or `none` for the loopback development client.
fn client_auth(st: &MockState, form: &HashMap<String, String>) -> Result<&'static str, String> {
    let client_id = form.get("client_id").ok_or("no client_id")?;
    let jwks = st.config.lock().unwrap().client_jwks.clone();
    match jwks {
        Some(jwks) => {
            if form.get("client_assertion_type").map(String::as_str) != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
                return Err("client_assertion_type".into());
            }
            let assertion = form.get("client_assertion").ok_or("no client_assertion")?;
            let set = JwkSet::from_bytes(serde_json::to_vec(&jwks).unwrap()).map_err(|e| e.to_string())?;
            let header = jwt::decode_header(assertion).map_err(|e| e.to_string())?;
            let kid = header.claim("kid").and_then(|v| v.as_str()).ok_or("no kid")?;
            let key = set.get(kid).first().cloned().ok_or("unknown kid")?;
            let verifier = ES256.verifier_from_jwk(key).map_err(|e| e.to_string())?;
            let (p, _) = jwt::decode_with_verifier(assertion, &verifier).map_err(|e| format!("assertion signature: {e}"))?;
            if p.issuer() != Some(client_id) || p.subject() != Some(client_id) {
                return Err("assertion iss/sub".into());
            }
            if p.audience() != Some(vec![st.base.as_str()]) {
                return Err(format!("assertion aud {:?}", p.audience()));
            }
            let exp = p.claim("exp").and_then(|v| v.as_u64()).ok_or("exp")?;
            if exp < now() {
                return Err("assertion expired".into());
            }
            let jti = p.jwt_id().ok_or("assertion jti")?.to_string();
            if !st.seen_jti.lock().unwrap().insert(format!("ca:{jti}")) {
                return Err("assertion jti replay".into());
            }
            Ok("private_key_jwt")
        }
        None => {
            if form.contains_key("client_assertion") {
                return Err("unexpected client assertion".into());
            }
            if !client_id.starts_with("http://localhost?") {
                return Err("public client must be the loopback client".into());
            }
            Ok("none")
        }
    }
}

/// Common AS-endpoint checks: DPoP (with the AS nonce) and client auth.
fn as_checks(
    st: &MockState,
    req: &HttpRequest,
    endpoint: &str,
    form: &HashMap<String, String>,
) -> Result<(Proof, &'static str), HttpResponse> {
    let proof = match verify_dpop(st, req, "POST", endpoint, None) {
        Ok(p) => p,
        Err(e) => {
            record(st, endpoint, None, 400, None, form);
            return Err(oauth_err(400, "invalid_dpop_proof", &e));
        }
    };
    if st.config.lock().unwrap().always_challenge {
        record(st, endpoint, proof.nonce.clone(), 400, None, form);
        return Err(HttpResponse::BadRequest()
            .insert_header(("DPoP-Nonce", rand_id("rotating-")))
            .json(json!({"error": "use_dpop_nonce"})));
    }
    if proof.nonce.as_deref() != Some(AS_NONCE) {
        record(st, endpoint, proof.nonce.clone(), 400, None, form);
        return Err(oauth_err(400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof"));
    }
    let auth = match client_auth(st, form) {
        Ok(a) => a,
        Err(e) => {
            record(st, endpoint, proof.nonce.clone(), 401, None, form);
            return Err(oauth_err(401, "invalid_client", &e));
        }
    };
    Ok((proof, auth))
}

async fn par(req: HttpRequest, st: State, form: Form) -> HttpResponse {
    let form = form.into_inner();
    let (proof, auth) = match as_checks(&st, &req, "/oauth/par", &form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || get("state").is_empty()
        || !get("scope").split(' ').any(|s| s == "atproto")
    {
        record(&st, "/oauth/par", proof.nonce, 400, Some(auth), &form);
        return oauth_err(400, "invalid_request", "bad PAR parameters");
    }
    let request_uri = rand_id("urn:ietf:params:oauth:request_uri:req-");
    st.par.lock().unwrap().insert(
        request_uri.clone(),
        ParRequest {
            client_id: get("client_id"),
            state: get("state"),
            redirect_uri: get("redirect_uri"),
            code_challenge: get("code_challenge"),
            scope: get("scope"),
            jkt: proof.jkt,
            login_hint: form.get("login_hint").cloned(),
        },
    );
    record(&st, "/oauth/par", proof.nonce, 201, Some(auth), &form);
    HttpResponse::Created().insert_header(("DPoP-Nonce", AS_NONCE)).json(json!({"request_uri": request_uri, "expires_in": 299}))
}

async fn authorize(st: State, q: Query) -> HttpResponse {
    let Some(p) = q.get("request_uri").and_then(|u| st.par.lock().unwrap().remove(u)) else {
        return HttpResponse::BadRequest().body("unknown request_uri");
    };
    if q.get("client_id") != Some(&p.client_id) {
        return HttpResponse::BadRequest().body("client_id mismatch");
    }
    let cfg = st.config.lock().unwrap().clone();
    let mut loc = url::Url::parse(&p.redirect_uri).unwrap();
    {
        let mut qp = loc.query_pairs_mut();
        if cfg.access_denied {
            qp.append_pair("error", "access_denied");
            qp.append_pair("error_description", "User refused");
        } else {
            let code = rand_id("cod-");
            let sub = cfg.sub_override.clone().unwrap_or_else(|| {
                p.login_hint.as_ref().and_then(|h| st.handles.lock().unwrap().get(h).cloned()).unwrap_or_else(|| ALICE_DID.to_string())
            });
            st.codes.lock().unwrap().insert(code.clone(), (p.clone(), sub));
            qp.append_pair("code", &code);
        }
        qp.append_pair("state", &p.state);
        if !cfg.omit_iss {
            qp.append_pair("iss", if cfg.wrong_iss { "https://evil.example.com" } else { &st.base });
        }
    }
    HttpResponse::Found().insert_header(("Location", loc.to_string())).finish()
}

fn issue(st: &MockState, sub: &str, jkt: &str, scope: &str) -> HttpResponse {
    let at = rand_id("at-");
    let rt = rand_id("rt-");
    let g = Grant { sub: sub.into(), jkt: jkt.into(), scope: scope.into() };
    st.access.lock().unwrap().insert(at.clone(), g.clone());
    st.refresh.lock().unwrap().insert(rt.clone(), g);
    let (omit_scope, expires_in) = {
        let cfg = st.config.lock().unwrap();
        (cfg.omit_scope, cfg.expires_in)
    };
    let mut body =
        json!({"access_token": at, "token_type": "DPoP", "expires_in": expires_in, "refresh_token": rt, "scope": scope, "sub": sub});
    if omit_scope {
        body.as_object_mut().unwrap().remove("scope");
    }
    HttpResponse::Ok().insert_header(("DPoP-Nonce", AS_NONCE)).json(body)
}

async fn token(req: HttpRequest, st: State, form: Form) -> HttpResponse {
    let form = form.into_inner();
    let (proof, auth) = match as_checks(&st, &req, "/oauth/token", &form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let granted = st.config.lock().unwrap().granted_scope.clone();
    let fail = |st: &MockState, why: &str| {
        record(st, "/oauth/token", proof.nonce.clone(), 400, Some(auth), &form);
        oauth_err(400, "invalid_grant", why)
    };
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((p, sub)) = form.get("code").and_then(|c| st.codes.lock().unwrap().remove(c)) else {
                return fail(&st, "unknown code");
            };
            if form.get("redirect_uri") != Some(&p.redirect_uri) || form.get("client_id") != Some(&p.client_id) {
                return fail(&st, "redirect_uri/client_id mismatch");
            }
            if form.get("code_verifier").map(|v| b64_sha256(v)) != Some(p.code_challenge.clone()) {
                return fail(&st, "PKCE verification failed");
            }
            if proof.jkt != p.jkt {
                return fail(&st, "DPoP key differs from the PAR key");
            }
            record(&st, "/oauth/token", proof.nonce.clone(), 200, Some(auth), &form);
            let granted = if st.config.lock().unwrap().grant_as_requested { p.scope.clone() } else { granted };
            issue(&st, &sub, &proof.jkt, &granted)
        }
        Some("refresh_token") => {
            st.refresh_grants.fetch_add(1, Ordering::SeqCst);
            let behaviour = st.refresh_behaviour.lock().unwrap().clone();
            if !behaviour.delay.is_zero() {
                tokio::time::sleep(behaviour.delay).await;
            }
            match behaviour.fail_status {
                Some(status) if status < 500 => return fail(&st, "refresh refused (test)"),
                Some(status) => {
                    record(&st, "/oauth/token", proof.nonce.clone(), status, Some(auth), &form);
                    return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body("upstream trouble (test)");
                }
                None => {}
            }
            let Some(g) = form.get("refresh_token").and_then(|r| st.refresh.lock().unwrap().remove(r)) else {
                return fail(&st, "unknown or used refresh token");
            };
            if g.jkt != proof.jkt {
                return fail(&st, "DPoP key differs");
            }
            record(&st, "/oauth/token", proof.nonce.clone(), 200, Some(auth), &form);
            issue(&st, &g.sub, &g.jkt, &g.scope)
        }
        _ => fail(&st, "unsupported grant_type"),
    }
}

async fn revoke(req: HttpRequest, st: State, form: Form) -> HttpResponse {
    let form = form.into_inner();
    let (proof, auth) = match as_checks(&st, &req, "/oauth/revoke", &form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let behaviour = st.revoke_behaviour.lock().unwrap().clone();
    if !behaviour.delay.is_zero() {
        st.revokes_delayed.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(behaviour.delay).await;
    }
    if let Some(status) = behaviour.fail_status {
        record(&st, "/oauth/revoke", proof.nonce, status, Some(auth), &form);
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body("revocation trouble (test)");
    }
    if let Some(t) = form.get("token") {
        st.access.lock().unwrap().remove(t);
        st.refresh.lock().unwrap().remove(t);
        st.revoked.lock().unwrap().push(t.clone());
    }
    record(&st, "/oauth/revoke", proof.nonce, 200, Some(auth), &form);
    HttpResponse::Ok().insert_header(("DPoP-Nonce", AS_NONCE)).finish()
}

fn pds_err(status: u16, error: &str, www: Option<&str>) -> HttpResponse {
    let mut b = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    b.insert_header(("DPoP-Nonce", PDS_NONCE));
    if let Some(w) = www {
        b.insert_header(("WWW-Authenticate", w));
    }
    b.json(json!({"error": error, "message": error}))
}

/// Resource-server checks: `Authorization: DPoP <token>`, proof with `ath` and the PDS nonce,
/// proof key bound to the token.
fn pds_checks(st: &MockState, req: &HttpRequest, endpoint: &str) -> Result<Grant, HttpResponse> {
    pds_checks_for(st, req, "GET", endpoint)
}

/// [`pds_checks`] for a request with method `htm`.
fn pds_checks_for(st: &MockState, req: &HttpRequest, htm: &str, endpoint: &str) -> Result<Grant, HttpResponse> {
    let empty = HashMap::new();
    let auth = req.headers().get("Authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(tok) = auth.strip_prefix("DPoP ") else {
        record(st, endpoint, None, 401, None, &empty);
        return Err(pds_err(401, "AuthMissing", Some("DPoP")));
    };
    let proof = match verify_dpop(st, req, htm, endpoint, Some(tok)) {
        Ok(p) => p,
        Err(e) => {
            record(st, endpoint, None, 401, None, &empty);
            return Err(pds_err(401, &format!("invalid_dpop_proof: {e}"), Some("DPoP error=\"invalid_dpop_proof\"")));
        }
    };
    if proof.nonce.as_deref() != Some(PDS_NONCE) {
        record(st, endpoint, proof.nonce, 401, None, &empty);
        return Err(pds_err(
            401,
            "use_dpop_nonce",
            Some("DPoP error=\"use_dpop_nonce\", error_description=\"Resource server requires nonce in DPoP proof\""),
        ));
    }
    let Some(g) = st.access.lock().unwrap().get(tok).cloned() else {
        record(st, endpoint, proof.nonce, 401, None, &empty);
        return Err(pds_err(401, "InvalidToken", Some("DPoP error=\"invalid_token\"")));
    };
    if g.jkt != proof.jkt {
        record(st, endpoint, proof.nonce, 401, None, &empty);
        return Err(pds_err(401, "InvalidToken", Some("DPoP error=\"invalid_token\"")));
    }
    record(st, endpoint, proof.nonce, 200, None, &empty);
    Ok(g)
}

async fn get_record(req: HttpRequest, st: State, q: Query) -> HttpResponse {
    let g = match pds_checks(&st, &req, "/xrpc/com.atproto.repo.getRecord") {
        Ok(g) => g,
        Err(r) => return r,
    };
    let (collection, rkey) = (q.get("collection").cloned().unwrap_or_default(), q.get("rkey").cloned().unwrap_or_default());
    if q.get("repo") == Some(&g.sub) && (collection.as_str(), rkey.as_str()) != ("app.bsky.actor.profile", "self") {
        received(&st, &req, "com.atproto.repo.getRecord", &[]);
        return match st.records.lock().unwrap().get(&(g.sub.clone(), collection.clone(), rkey.clone())).cloned() {
            Some(value) => HttpResponse::Ok().insert_header(("DPoP-Nonce", PDS_NONCE)).json(json!({
                "uri": format!("at://{}/{collection}/{rkey}", g.sub), "cid": "bafyreirecord", "value": value,
            })),
            None => pds_err(400, "RecordNotFound", None),
        };
    }
    if q.get("repo") != Some(&g.sub) || collection != "app.bsky.actor.profile" || rkey != "self" {
        return pds_err(400, "InvalidRequest", None);
    }
    match st.config.lock().unwrap().profile.clone() {
        Some(value) => HttpResponse::Ok().insert_header(("DPoP-Nonce", PDS_NONCE)).json(json!({
            "uri": format!("at://{}/app.bsky.actor.profile/self", g.sub),
            "cid": "bafyreiprofile",
            "value": value,
        })),
        None => pds_err(400, "RecordNotFound", None),
    }
}

async fn get_session(req: HttpRequest, st: State) -> HttpResponse {
    let g = match pds_checks(&st, &req, "/xrpc/com.atproto.server.getSession") {
        Ok(g) => g,
        Err(r) => return r,
    };
    let email = st.config.lock().unwrap().email.clone();
    HttpResponse::Ok().insert_header(("DPoP-Nonce", PDS_NONCE)).json(json!({
        "did": g.sub, "handle": ALICE_HANDLE, "email": email, "emailConfirmed": true, "active": true,
    }))
}

async fn resolve_handle(st: State, q: Query) -> HttpResponse {
    match q.get("handle").and_then(|h| st.handles.lock().unwrap().get(h).cloned()) {
        Some(did) => HttpResponse::Ok().json(json!({"did": did})),
        None => HttpResponse::BadRequest().json(json!({"error": "InvalidRequest", "message": "Unable to resolve handle"})),
    }
}

async fn plc(st: State, path: web::Path<String>) -> HttpResponse {
    match st.docs.lock().unwrap().get(path.as_str()).cloned() {
        Some(doc) => HttpResponse::Ok().json(doc),
        None => HttpResponse::NotFound().json(json!({"message": "DID not registered"})),
    }
}

fn received(st: &MockState, req: &HttpRequest, nsid: &str, body: &[u8]) {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    st.xrpc_received.lock().unwrap().push(XrpcReceived {
        nsid: nsid.to_owned(),
        method: req.method().to_string(),
        query: req.query_string().to_owned(),
        content_type: header("content-type"),
        atproto_proxy: header("atproto-proxy"),
        body: body.to_vec(),
    });
}

fn xrpc_ok(body: Value) -> HttpResponse {
    HttpResponse::Ok().insert_header(("DPoP-Nonce", PDS_NONCE)).json(body)
}

/// Writes a record into the mock repo; a write to another account's repo is refused like a
/// real PDS does.
fn write_record(
    st: &MockState,
    g: &Grant,
    repo: &Value,
    collection: &Value,
    rkey: Option<&Value>,
    value: Option<&Value>,
) -> Result<Value, HttpResponse> {
    if repo.as_str() != Some(g.sub.as_str()) {
        return Err(pds_err(403, "InvalidRepo", None));
    }
    let collection = collection.as_str().ok_or_else(|| pds_err(400, "InvalidRequest", None))?.to_owned();
    let rkey = rkey.and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| rand_id("3k"));
    let key = (g.sub.clone(), collection.clone(), rkey.clone());
    match value {
        Some(value) => {
            st.records.lock().unwrap().insert(key, value.clone());
        }
        None => {
            st.records.lock().unwrap().remove(&key);
        }
    }
    Ok(json!({"uri": format!("at://{}/{collection}/{rkey}", g.sub), "cid": "bafyreirecord"}))
}

/// The repo write methods, `uploadBlob`, and `com.example.echo` (a procedure that echoes).
async fn xrpc_procedure(req: HttpRequest, st: State, nsid: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let nsid = nsid.into_inner();
    let g = match pds_checks_for(&st, &req, "POST", &format!("/xrpc/{nsid}")) {
        Ok(g) => g,
        Err(r) => return r,
    };
    received(&st, &req, &nsid, &body);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = match nsid.as_str() {
        "com.atproto.repo.createRecord" | "com.atproto.repo.putRecord" => {
            write_record(&st, &g, &json["repo"], &json["collection"], json.get("rkey"), Some(&json["record"]))
        }
        "com.atproto.repo.deleteRecord" => write_record(&st, &g, &json["repo"], &json["collection"], json.get("rkey"), None),
        "com.atproto.repo.applyWrites" => {
            let mut results = Vec::new();
            for w in json["writes"].as_array().cloned().unwrap_or_default() {
                let value = (!w["$type"].as_str().unwrap_or_default().ends_with("#delete")).then(|| w["value"].clone());
                match write_record(&st, &g, &json["repo"], &w["collection"], w.get("rkey"), value.as_ref()) {
                    Ok(r) => results.push(r),
                    Err(e) => return e,
                }
            }
            Ok(json!({"results": results}))
        }
        "com.atproto.repo.uploadBlob" => {
            let mime = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            Ok(json!({"blob": {"$type": "blob", "ref": {"$link": "bafkreiblob"}, "mimeType": mime, "size": body.len()}}))
        }
        "com.example.echo" => Ok(json!({"echo": json})),
        _ => Err(pds_err(501, "MethodNotImplemented", None)),
    };
    result.map(xrpc_ok).unwrap_or_else(|e| e)
}

/// `com.example.query`: a generic query answering what it received.
async fn xrpc_query(req: HttpRequest, st: State, nsid: web::Path<String>) -> HttpResponse {
    let nsid = nsid.into_inner();
    if let Err(r) = pds_checks_for(&st, &req, "GET", &format!("/xrpc/{nsid}")) {
        return r;
    }
    received(&st, &req, &nsid, &[]);
    match nsid.as_str() {
        "com.example.query" => xrpc_ok(json!({"query": req.query_string()})),
        _ => pds_err(501, "MethodNotImplemented", None),
    }
}
