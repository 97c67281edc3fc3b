//! Control-socket request lines (`control::respond`: size check, JSON `Request`
//! deserialisation, dispatch) with a handler that answers every command. Nothing may panic;
//! every answer must serialise as the response line the socket writes, and a request that
//! parsed must survive a serialise/parse round trip unchanged.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use xdhcpd::control::{respond, Handler, Request, Response};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let handler: Handler = Arc::new(|req: Request| {
        let again = serde_json::to_string(&req).expect("a request serialises");
        let back: Request = serde_json::from_str(&again).expect("a serialised request parses");
        assert_eq!(back, req, "request round trip");
        match req {
            Request::FailoverStatus => Response::error("no failover"),
            other => Response::message(format!("{other:?}")),
        }
    });
    let resp = respond(&line, &handler);
    let out = serde_json::to_vec(&resp).expect("a response serialises");
    assert!(!out.contains(&b'\n'), "a response is one line");
    let back: Response = serde_json::from_slice(&out).expect("a response parses back");
    assert_eq!(back.ok, resp.ok);
});
