//! The endpoint's fixed routes: each is a function of the run's [`Telemetry`], read-only.
//! Any other path is a 404 (nothing is ever served from a file).

use crate::telemetry::Telemetry;

/// A response, before it is written. The body may be shared with other responses (the
/// status document, the console page), never copied per request.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: bytes::Bytes,
}

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        body.push('\n');
        Response {
            status,
            content_type: TEXT,
            body: body.into_bytes().into(),
        }
    }

    /// The reason phrase of the statuses the endpoint sends.
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }
}

/// The response to a GET (or HEAD) of `target` (its query string is ignored).
pub(crate) fn route(telemetry: &Telemetry, target: &str) -> Response {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match path {
        "/" => html(crate::report::console_page()),
        "/metrics" => Response {
            status: 200,
            content_type: OPENMETRICS,
            body: telemetry.metrics_text().into_bytes().into(),
        },
        "/healthz" => Response::text(200, "ok"),
        "/readyz" => match telemetry.readiness() {
            Ok(summary) => Response::text(200, format!("ready: {summary}")),
            Err(summary) => Response::text(503, summary),
        },
        "/api/status" => match telemetry.status_json() {
            Ok(body) => Response {
                status: 200,
                content_type: JSON,
                body,
            },
            Err(e) => Response::text(500, format!("encoding the status: {e}")),
        },
        _ => Response::text(404, "not found"),
    }
}

fn html(page: &'static str) -> Response {
    Response {
        status: 200,
        content_type: HTML,
        body: bytes::Bytes::from_static(page.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Limits, RunInfo};

    #[test]
    fn status_requests_between_changes_share_one_document() {
        let telemetry = Telemetry::new(RunInfo::default(), Limits::default());
        let first = route(&telemetry, "/api/status");
        let second = route(&telemetry, "/api/status?again");
        assert_eq!((first.status, first.content_type), (200, JSON));
        assert_eq!(first.body.as_ptr(), second.body.as_ptr());
        let page = route(&telemetry, "/");
        assert_eq!(page.body.as_ptr(), crate::report::console_page().as_ptr());
    }
}
