//! The least proxy-wasm HTTP filter: reads `:authority` and lets the request go on. It measures
//! the cost of the ABI crossing alone, as the peer of `global_guard` in `benches/filter/run.sh`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(NoopRoot));
}}

struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopRequest))
    }
}

struct NoopRequest;

impl Context for NoopRequest {}

impl HttpContext for NoopRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let _authority = self.get_http_request_header(":authority");
        Action::Continue
    }
}
