//! Authorization endpoint error rules.
use super::helpers::{location, query_param, spawn_app, Browser};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[tokio::test]
async fn untrusted_client_or_redirect_gets_a_page_never_a_redirect() {
    let app = spawn_app().await;
    let registered = app.register("app", false, false).await;
    let browser = Browser::new();
    let id = &registered.client.client_id;
    let cases = [
        "/oauth2/authorize?response_type=code&scope=openid&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fapp%2Fcallback".to_string(),
        format!("/oauth2/authorize?client_id=nope&response_type=code&scope=openid&redirect_uri={}", urlenc(&registered.redirect_uri)),
        format!("/oauth2/authorize?client_id={id}&response_type=code&scope=openid"),
        format!("/oauth2/authorize?client_id={id}&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
        format!("/oauth2/authorize?client_id={id}&response_type=code&scope=openid&redirect_uri={}x", urlenc(&registered.redirect_uri)),
        format!(
            "/oauth2/authorize?client_id={id}&client_id={id}&response_type=code&scope=openid&redirect_uri={}",
            urlenc(&registered.redirect_uri)
        ),
    ];
    for path in cases {
        let response = browser.get(&app.url(&path)).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.headers().get("location").is_none(), "{path} must not redirect");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
    }

    atsso::oidc::clients::set_enabled(&app.state.store, None, id, false).await.unwrap();
    let response = browser
        .get(&app.url(&format!(
            "/oauth2/authorize?client_id={id}&response_type=code&scope=openid&redirect_uri={}",
            urlenc(&registered.redirect_uri)
        )))
        .await;
    assert_eq!(response.status(), 400, "disabled client gets a page");
}

fn urlenc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn other_errors_redirect_with_error_state_and_iss() {
    let app = spawn_app().await;
    let confidential = app.register("conf", false, false).await;
    let public = app.register("pub", true, false).await;
    let browser = Browser::new();
    let base = |c: &super::helpers::RegisteredClient| {
        format!("/oauth2/authorize?client_id={}&redirect_uri={}&state=xyz", c.client.client_id, urlenc(&c.redirect_uri))
    };
    // PKCE is required of every client: cases about other rules carry it.
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    let cases = [
        (base(&confidential) + "&scope=openid", "invalid_request"), // no response_type
        (base(&confidential) + "&response_type=token&scope=openid", "unsupported_response_type"),
        (base(&confidential) + "&response_type=code", "invalid_scope"), // no openid
        (base(&confidential) + "&response_type=code&scope=openid%20admin", "invalid_scope"),
        (
            base(&confidential) + &format!("&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=plain"),
            "invalid_request",
        ),
        (base(&confidential) + &format!("&response_type=code&scope=openid&code_challenge={CHALLENGE}"), "invalid_request"),
        (base(&confidential) + "&response_type=code&scope=openid&code_challenge=short&code_challenge_method=S256", "invalid_request"),
        (base(&public) + "&response_type=code&scope=openid", "invalid_request"), // public needs PKCE
        (base(&confidential) + "&response_type=code&scope=openid", "invalid_request"), // and so does confidential
        (base(&confidential) + "&response_type=code&scope=openid&prompt=none%20login" + &pkce, "invalid_request"),
        (base(&confidential) + "&response_type=code&scope=openid&prompt=bogus" + &pkce, "invalid_request"),
        (base(&confidential) + "&response_type=code&scope=openid&max_age=-1" + &pkce, "invalid_request"),
        (base(&confidential) + "&response_type=code&scope=openid&request=eyJ", "request_not_supported"),
        (base(&confidential) + "&response_type=code&scope=openid&request_uri=urn:x", "request_uri_not_supported"),
        (base(&confidential) + "&response_type=code&scope=openid&response_mode=fragment", "invalid_request"),
    ];
    for (path, error) in cases {
        let response = browser.get(&app.url(&path)).await;
        assert_eq!(response.status(), 302, "{path}");
        let next = location(&response);
        let expected_base = if path.contains("client_id=") && path.contains(&public.client.client_id) {
            &public.redirect_uri
        } else {
            &confidential.redirect_uri
        };
        assert!(next.starts_with(expected_base.as_str()), "{path} → {next}");
        assert_eq!(query_param(&next, "error").as_deref(), Some(error), "{path}");
        assert!(query_param(&next, "error_description").is_some());
        assert_eq!(query_param(&next, "state").as_deref(), Some("xyz"));
        assert_eq!(query_param(&next, "iss").as_deref(), Some(app.base.as_str()));
    }
}

#[tokio::test]
async fn oversized_and_malformed_input_is_refused_cleanly() {
    let app = spawn_app().await;
    let registered = app.register("app", false, false).await;
    let browser = Browser::new();
    let huge_state = "s".repeat(20_000);
    let path = format!(
        "/oauth2/authorize?client_id={}&redirect_uri={}&response_type=code&scope=openid&state={huge_state}",
        registered.client.client_id,
        urlenc(&registered.redirect_uri)
    );
    let response = browser.get(&app.url(&path)).await;
    assert!(response.status().is_client_error(), "{}", response.status());
    assert!(response.headers().get("location").is_none());

    let response = browser.get(&app.url("/oauth2/authorize?%zz=1")).await;
    assert_eq!(response.status(), 400);

    let response = browser.http.post(app.url("/oauth2/authorize")).body(vec![0xffu8, 0xfe]).send().await.unwrap();
    assert_eq!(response.status(), 400);

    for path in ["/login?request_id=unknown", "/consent?request_id=unknown", "/consent"] {
        let response = browser.get(&app.url(path)).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.text().await.unwrap().contains("expired"));
    }
}

#[tokio::test]
async fn discovery_and_jwks_publish_what_a_certified_op_does() {
    let app = spawn_app().await;
    let doc: serde_json::Value = reqwest::get(app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["issuer"], app.base);
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "scopes_supported",
        "claims_supported",
        "response_types_supported",
        "grant_types_supported",
        "subject_types_supported",
    ] {
        assert!(doc.get(field).is_some(), "{field}");
    }
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(doc["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["token_endpoint_auth_methods_supported"], serde_json::json!(["client_secret_basic", "client_secret_post", "none"]));
    for path in ["/.well-known/jwks.json", "/api/auth/jwks"] {
        let jwks: serde_json::Value = reqwest::get(app.url(path)).await.unwrap().json().await.unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        let rsa = keys.iter().find(|k| k["kty"] == "RSA").expect("an RSA key for ID tokens");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["use"], "sig");
        assert!(rsa["kid"].is_string());
        for key in keys {
            assert!(key.get("d").is_none(), "no private parts");
        }
    }
    assert_eq!(reqwest::get(app.url("/healthz")).await.unwrap().status(), 200);
}
