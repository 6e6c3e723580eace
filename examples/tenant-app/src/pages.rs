//! The app's HTML: one layout, the home page (signed in or out) and an error page. Every value
//! that came from outside goes through `escape`.
use crate::provider::Claims;

/// What the home page shows.
pub struct Home<'a> {
    pub app_name: &'a str,
    pub claims: Option<&'a Claims>,
    /// The result of "Call userinfo", when asked for.
    pub userinfo: Option<Result<serde_json::Value, String>>,
    pub notice: Option<&'a str>,
}

pub fn home(page: &Home<'_>) -> String {
    let notice = page.notice.map(|n| format!(r#"<p class="notice">{}</p>"#, escape(n))).unwrap_or_default();
    let body = match page.claims {
        None => signed_out(page.app_name),
        Some(claims) => signed_in(claims, page.userinfo.as_ref()),
    };
    layout(page.app_name, &format!("{notice}{body}"))
}

fn signed_out(app_name: &str) -> String {
    format!(
        r#"<p>You are not signed in to {}.</p>
<p><a class="button" href="/login">Sign in</a></p>
<p class="hint">You will sign in with your ATProto handle (for example <code>alice.bsky.social</code>) at atsso.
If you are already signed in to another app of the same atsso, you will not be asked again.</p>"#,
        escape(app_name)
    )
}

fn signed_in(claims: &Claims, userinfo: Option<&Result<serde_json::Value, String>>) -> String {
    let who = claims.preferred_username.as_deref().map(|h| format!("@{h}")).unwrap_or_else(|| claims.sub.clone());
    let avatar = claims
        .picture
        .as_deref()
        .filter(|p| p.starts_with("https://") || p.starts_with("http://"))
        .map(|p| format!(r#"<img class="avatar" src="{}" alt="">"#, escape(p)))
        .unwrap_or_default();
    let rows = [
        ("sub (your DID)", Some(claims.sub.clone())),
        ("preferred_username (handle)", claims.preferred_username.clone()),
        ("name", claims.name.clone()),
        ("picture", claims.picture.clone()),
        ("email", claims.email.clone()),
        ("email_verified", claims.email_verified.map(|v| v.to_string())),
        ("sid (atsso session)", claims.sid.clone()),
        ("auth_time", claims.auth_time.map(|t| t.to_string())),
        ("exp", Some(claims.expires_at.to_string())),
    ]
    .iter()
    .map(|(name, value)| {
        let value = value.as_deref().map(|v| format!("<code>{}</code>", escape(v))).unwrap_or_else(|| "<em>not sent</em>".into());
        format!("<tr><th>{name}</th><td>{value}</td></tr>")
    })
    .collect::<String>();
    let userinfo = match userinfo {
        None => String::new(),
        Some(Ok(json)) => format!(
            "<h2>userinfo</h2><pre>{}</pre>",
            escape(&serde_json::to_string_pretty(json).unwrap_or_default())
        ),
        Some(Err(error)) => format!(r#"<h2>userinfo</h2><p class="error">{}</p>"#, escape(error)),
    };
    format!(
        r#"<p class="who">{avatar}Signed in as <strong>{who}</strong></p>
<h2>ID token claims</h2>
<table>{rows}</table>
{userinfo}
<div class="actions">
  <a class="button secondary" href="/userinfo">Call userinfo</a>
  <form method="post" action="/logout"><button type="submit">Sign out everywhere</button></form>
</div>"#,
        who = escape(&who),
    )
}

pub fn error(app_name: &str, title: &str, detail: &str) -> String {
    layout(
        app_name,
        &format!(
            r#"<h2>{}</h2><p class="error">{}</p><p><a class="button" href="/">Back to {}</a></p>"#,
            escape(title),
            escape(detail),
            escape(app_name)
        ),
    )
}

fn layout(app_name: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #1d2530; }}
header {{ border-bottom: 1px solid #d8dee6; margin-bottom: 1.5rem; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 1.5rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #eef1f4; vertical-align: top; }}
th {{ font-weight: 600; white-space: nowrap; }} td code {{ word-break: break-all; }}
pre {{ background: #f4f6f8; padding: .75rem; overflow-x: auto; }}
.button, button {{ display: inline-block; background: #1361d6; color: #fff; border: 0; border-radius: .4rem;
  padding: .55rem 1rem; font: inherit; text-decoration: none; cursor: pointer; }}
.secondary {{ background: #e8eef7; color: #1361d6; }}
.actions {{ display: flex; gap: .75rem; margin-top: 1.5rem; }} .actions form {{ margin: 0; }}
.avatar {{ width: 2.5rem; height: 2.5rem; border-radius: 50%; vertical-align: middle; margin-right: .6rem; }}
.notice {{ background: #e9f7ee; padding: .6rem .8rem; border-radius: .4rem; }}
.error {{ color: #a3221b; }} .hint {{ color: #5b6673; font-size: .9rem; }}
</style></head>
<body><header><h1>{name}</h1></header>
{body}
</body></html>"#,
        name = escape(app_name),
    )
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: "did:plc:abc".into(),
            preferred_username: Some("alice.test".into()),
            name: Some("<script>alert(1)</script>".into()),
            picture: Some("javascript:alert(1)".into()),
            email: None,
            email_verified: None,
            sid: Some("s1".into()),
            auth_time: Some(1),
            expires_at: 2,
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn signed_in_page_shows_claims_escaped_and_no_script_urls() {
        let claims = claims();
        let html = home(&Home { app_name: "Notes", claims: Some(&claims), userinfo: None, notice: None });
        assert!(html.contains("did:plc:abc") && html.contains("@alice.test"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(!html.contains("<img"), "a javascript: picture is not rendered as an image");
        assert!(html.contains(r#"action="/logout""#));
    }

    #[test]
    fn signed_out_page_offers_sign_in() {
        let html = home(&Home { app_name: "Photos", claims: None, userinfo: None, notice: Some("Signed out.") });
        assert!(html.contains(r#"href="/login""#) && html.contains("Signed out.") && html.contains("<title>Photos</title>"));
    }
}
