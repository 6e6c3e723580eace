//! The tera pages, compiled into the binary so `atsso` runs from any directory.
use std::sync::LazyLock;

use tera::{Context, Tera};

const PAGES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("consent.html", include_str!("../templates/consent.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("logout_confirm.html", include_str!("../templates/logout_confirm.html")),
    ("logged_out.html", include_str!("../templates/logged_out.html")),
    ("signed_in.html", include_str!("../templates/signed_in.html")),
    ("admin/layout.html", include_str!("../templates/admin/layout.html")),
    ("admin/signin.html", include_str!("../templates/admin/signin.html")),
    ("admin/pager.html", include_str!("../templates/admin/pager.html")),
    ("admin/client_fields.html", include_str!("../templates/admin/client_fields.html")),
    ("admin/clients.html", include_str!("../templates/admin/clients.html")),
    ("admin/client_new.html", include_str!("../templates/admin/client_new.html")),
    ("admin/client.html", include_str!("../templates/admin/client.html")),
    ("admin/secret.html", include_str!("../templates/admin/secret.html")),
    ("admin/confirm.html", include_str!("../templates/admin/confirm.html")),
    ("admin/users.html", include_str!("../templates/admin/users.html")),
    ("admin/user.html", include_str!("../templates/admin/user.html")),
    ("admin/keys.html", include_str!("../templates/admin/keys.html")),
    ("admin/audit.html", include_str!("../templates/admin/audit.html")),
];

pub const STYLESHEET: &str = include_str!("../templates/assets/style.css");
pub const ADMIN_STYLESHEET: &str = include_str!("../templates/assets/admin.css");
pub const ADMIN_SCRIPT: &str = include_str!("../templates/assets/admin.js");

static TERA: LazyLock<Result<Tera, String>> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_templates(PAGES.iter().copied()).map_err(|e| format!("{e:?}"))?;
    tera.autoescape_on(vec![".html"]);
    Ok(tera)
});

/// Renders a page; a template error is logged and yields a bare fallback so users still see text.
pub fn render(name: &str, context: &Context) -> String {
    let rendered = match &*TERA {
        Ok(tera) => tera.render(name, context).map_err(|e| format!("{e:?}")),
        Err(e) => Err(e.clone()),
    };
    rendered.unwrap_or_else(|error| {
        tracing::error!(template = name, %error, "template rendering failed");
        "<!doctype html><title>atsso</title><p>Something went wrong. Please try again.</p>".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_compiles_and_escapes() {
        assert!(TERA.is_ok(), "{:?}", TERA.as_ref().err());
        let mut context = Context::new();
        context.insert("title", "Oops");
        context.insert("message", "<script>alert(1)</script>");
        context.insert("status", &400);
        let html = render("error.html", &context);
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>alert"));
    }
}
