//! The route table and the handlers of Mailpit's API v1 plus Tern's extensions.

mod app;
mod chaos;
mod html_check;
mod message;
mod messages;
mod queue;
mod stats;
mod tags;
mod validate;

use std::collections::HashMap;
use std::str::FromStr;

use axum::Router;
use axum::routing::{delete, get, post, put};

use crate::error::ApiError;
use crate::{State, events, guard, send, sendgrid, ui, wait};

/// Every route as (method, path), in the order of `openapi.json`; a test keeps the two equal
/// and checks that each one answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/messages"),
    ("PUT", "/api/v1/messages"),
    ("DELETE", "/api/v1/messages"),
    ("GET", "/api/v1/search"),
    ("DELETE", "/api/v1/search"),
    ("GET", "/api/v1/message/{ID}"),
    ("GET", "/api/v1/message/{ID}/headers"),
    ("GET", "/api/v1/message/{ID}/authentication"),
    ("GET", "/api/v1/message/{ID}/raw"),
    ("GET", "/api/v1/message/{ID}/part/{PartID}"),
    ("GET", "/api/v1/message/{ID}/links"),
    ("GET", "/api/v1/message/{ID}/link-check"),
    ("GET", "/api/v1/message/{ID}/codes"),
    ("GET", "/api/v1/message/{ID}/html-check"),
    ("POST", "/api/v1/message/{ID}/release"),
    ("GET", "/view/{ID}.html"),
    ("GET", "/view/{ID}.txt"),
    ("GET", "/api/v1/tags"),
    ("PUT", "/api/v1/tags"),
    ("PUT", "/api/v1/tags/{Tag}"),
    ("DELETE", "/api/v1/tags/{Tag}"),
    ("POST", "/api/v1/send"),
    ("POST", "/v3/mail/send"),
    ("GET", "/api/v1/info"),
    ("GET", "/api/v1/webui"),
    ("GET", "/api/v1/inboxes"),
    ("DELETE", "/api/v1/inboxes/{Address}"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/queue"),
    ("DELETE", "/api/v1/queue"),
    ("GET", "/api/v1/queue/{ID}"),
    ("POST", "/api/v1/queue/retry"),
    ("POST", "/api/v1/queue/hold"),
    ("POST", "/api/v1/queue/release"),
    ("GET", "/api/v1/chaos"),
    ("PUT", "/api/v1/chaos"),
    ("GET", "/api/v1/chaos/rules"),
    ("PUT", "/api/v1/chaos/rules"),
    ("POST", "/api/v1/chaos/rules"),
    ("DELETE", "/api/v1/chaos/rules"),
    ("GET", "/api/v1/validate"),
    ("GET", "/api/v1/wait"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/events"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// The whole HTTP surface.
pub fn router(state: State) -> Router {
    let router = Router::new()
        .route(
            "/api/v1/messages",
            get(messages::list).put(messages::set_read).delete(messages::delete),
        )
        .route("/api/v1/search", get(messages::search).delete(messages::delete_search))
        .route("/api/v1/message/{id}", get(message::detail))
        .route("/api/v1/message/{id}/headers", get(message::headers))
        .route("/api/v1/message/{id}/authentication", get(message::authentication))
        .route("/api/v1/message/{id}/raw", get(message::raw))
        .route("/api/v1/message/{id}/part/{part}", get(message::part))
        .route("/api/v1/message/{id}/links", get(message::links))
        .route("/api/v1/message/{id}/link-check", get(message::link_check))
        .route("/api/v1/message/{id}/codes", get(message::codes))
        .route("/api/v1/message/{id}/html-check", get(html_check::html_check))
        .route("/api/v1/message/{id}/release", post(queue::release_message))
        .route("/view/{file}", get(message::view))
        .route("/api/v1/tags", get(tags::list).put(tags::set))
        .route("/api/v1/tags/{tag}", put(tags::rename).delete(tags::delete))
        .route("/api/v1/send", post(send::send))
        .route("/v3/mail/send", post(sendgrid::mail_send))
        .route("/api/v1/info", get(app::info))
        .route("/api/v1/webui", get(app::webui))
        .route("/api/v1/inboxes", get(app::inboxes))
        .route("/api/v1/stats", get(stats::stats))
        .route("/api/v1/inboxes/{address}", delete(app::delete_inbox))
        .route("/api/v1/queue", get(queue::list).delete(queue::delete))
        .route("/api/v1/queue/{id}", get(queue::show))
        .route("/api/v1/queue/retry", post(queue::retry))
        .route("/api/v1/queue/hold", post(queue::hold))
        .route("/api/v1/queue/release", post(queue::release))
        .route("/api/v1/chaos", get(chaos::get_triggers).put(chaos::set_triggers))
        .route(
            "/api/v1/chaos/rules",
            get(chaos::list_rules)
                .put(chaos::set_rules)
                .post(chaos::add_rule)
                .delete(chaos::clear_rules),
        )
        .route("/api/v1/validate", get(validate::validate))
        .route("/api/v1/wait", get(wait::wait))
        .route("/api/v1/events", get(events::sse))
        .route("/api/events", get(events::websocket))
        .route("/api/v1/openapi.json", get(app::openapi))
        .route("/livez", get(app::livez))
        .route("/readyz", get(app::readyz))
        .route("/metrics", get(app::metrics))
        .route("/", get(ui::index))
        .route("/ui/{*file}", get(ui::asset))
        .fallback(app::not_found)
        .method_not_allowed_fallback(app::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::access::authenticate))
        .layer(axum::middleware::from_fn(guard::require_json_body));
    // Outside authentication: preflights carry no credentials.
    let router = match state.browser.cors() {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::check))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

/// Counts every request by status class for `/metrics`.
async fn count_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("tern_http_requests_total", "status" => class).increment(1);
    response
}

/// Query parameters, parsed one by one so a bad value gets a JSON 400 naming it.
pub(crate) struct Params(pub HashMap<String, String>);

impl Params {
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("invalid value for {name}: {value:?}"))),
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}
