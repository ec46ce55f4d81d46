//! The HTML pages and the assets shipped in the binary.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paygress_core::Offer;

use super::WebState;

const OFFER_HTML: &str = include_str!("assets/offer.html");
const LEASE_HTML: &str = include_str!("assets/lease.html");

/// `(name, content type, body)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    (
        "xterm.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/xterm/xterm.js"),
    ),
    (
        "xterm.css",
        "text/css; charset=utf-8",
        include_str!("assets/xterm/xterm.css"),
    ),
    (
        "xterm-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("assets/xterm/LICENSE"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// What the page may load: only this origin (xterm.js sets inline styles).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn html(body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
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

/// Thousandths as a decimal with up to three places (msat → sat, millicores → CPUs).
fn thousandths(msat: u64) -> String {
    let whole = msat / 1000;
    let frac = msat % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

/// `90` → `1 h 30 min`.
fn minutes_text(m: u64) -> String {
    let (d, h, min) = (m / 1440, m % 1440 / 60, m % 60);
    let mut parts = vec![];
    if d > 0 {
        parts.push(format!("{d} d"));
    }
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if min > 0 || parts.is_empty() {
        parts.push(format!("{min} min"));
    }
    parts.join(" ")
}

fn render_offer(offer: &Offer, state: &WebState) -> String {
    let mut tiers = String::new();
    for (i, t) in offer.tiers.iter().enumerate() {
        let _ = write!(
            tiers,
            r#"<label class="tier"><input type="radio" name="tier" value="{id}" data-rate-msat="{rate}"{checked}>
<span class="tier-name">{id}</span>
<span>{cpu} vCPU</span><span>{mem} MiB</span><span class="price">{price} sat/h</span></label>
"#,
            id = esc(&t.id),
            rate = t.rate_msat_per_hour,
            checked = if i == 0 { " checked" } else { "" },
            cpu = thousandths(u64::from(t.cpu_millicores)),
            mem = t.memory_mib,
            price = thousandths(t.rate_msat_per_hour),
        );
    }
    let mints: String = offer
        .mints
        .iter()
        .map(|m| format!("<li><code>{}</code></li>", esc(m.as_str())))
        .collect();
    let units: Vec<String> = offer.units.iter().map(|u| u.to_string()).collect();
    let mut identity = String::new();
    if let Some(npub) = &state.config.npub {
        let _ = write!(
            identity,
            "<dt>Nostr key</dt><dd><code class=\"wrap\">{}</code></dd>",
            esc(npub)
        );
    }
    if let Some(fp) = &state.config.host_key_fingerprint {
        let _ = write!(
            identity,
            "<dt>SSH host key</dt><dd><code class=\"wrap\" id=\"host-key\">{}</code></dd>",
            esc(fp)
        );
    }
    let default_minutes = 60.clamp(
        offer.min_duration_minutes,
        offer.max_duration_minutes.max(1),
    );
    OFFER_HTML
        .replace("{{name}}", &esc(&offer.name))
        .replace("{{version}}", &esc(&offer.version))
        .replace("{{tiers}}", &tiers)
        .replace("{{mints}}", &mints)
        .replace("{{units}}", &esc(&units.join(", ")))
        .replace("{{min}}", &offer.min_duration_minutes.to_string())
        .replace("{{max}}", &offer.max_duration_minutes.to_string())
        .replace("{{min_text}}", &minutes_text(offer.min_duration_minutes))
        .replace("{{max_text}}", &minutes_text(offer.max_duration_minutes))
        .replace("{{default}}", &default_minutes.to_string())
        .replace("{{backend}}", &esc(&offer.backend))
        .replace("{{ssh_host}}", &esc(&offer.ssh_host))
        .replace("{{identity}}", &identity)
}

/// `GET /`: the offer and the form to buy it.
pub(crate) async fn offer_page(State(state): State<Arc<WebState>>) -> Response {
    html(render_offer(&state.paygress.offer(), &state))
}

/// `GET /lease`: the lease page (its script reads the secret from the fragment).
pub(crate) async fn lease_page(State(state): State<Arc<WebState>>) -> Response {
    let offer = state.paygress.offer();
    html(LEASE_HTML.replace("{{name}}", &esc(&offer.name)))
}

/// `GET /web/assets/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_rates_and_durations() {
        assert_eq!(thousandths(60_000), "60");
        assert_eq!(thousandths(1_500), "1.5");
        assert_eq!(thousandths(250), "0.25");
        assert_eq!(minutes_text(90), "1 h 30 min");
        assert_eq!(minutes_text(10_080), "7 d");
        assert_eq!(minutes_text(0), "0 min");
    }
}
