//! The page served at `/` until the console replaces it.

/// A minimal page linking the endpoint's routes.
pub fn console_page() -> &'static str {
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>txflow</title></head>\n\
     <body><h1>txflow: mechanism-y</h1><ul>\n\
     <li><a href=\"/api/status\">/api/status</a> (JSON)</li>\n\
     <li><a href=\"/metrics\">/metrics</a> (Prometheus)</li>\n\
     <li><a href=\"/healthz\">/healthz</a>, <a href=\"/readyz\">/readyz</a></li>\n\
     </ul></body></html>\n"
}
