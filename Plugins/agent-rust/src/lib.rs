//! rustcalc -- a Parley agent plugin in Rust (rustc only, no crates).
//!
//! Evaluates arithmetic the user types ("12 * (3 + 4)", "2 ^ 10 / 4", "ans + 1") and remembers the last
//! result in the slot `last_result` (sent back as a Rasa `slot` event; the next request's
//! `tracker.slots.last_result` is what `ans` means). Anything else gets a short help text with buttons.
//! `/panic` panics on purpose: every entry point runs inside `catch_unwind`, so the panic becomes a
//! `PARLEY_E_INTERNAL` completion instead of aborting the host.
//!
//! `explain 2 * (3 + 4)` answers word by word, as an LLM would: a thread sends each word through
//! `parley_stream` (ABI 1.2, looked up with `get_api`, so the plugin still declares ABI 1.0 and loads on
//! older hosts, which just get the whole answer at the end), then completes the call with the full text.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

// ---- the ABI (mirror of include/parley.h v1.0) ----

const PARLEY_ABI_MAJOR: u32 = 1;
const PARLEY_ABI_MINOR: u32 = 0;
const PARLEY_OK: i32 = 0;
const PARLEY_PENDING: i32 = 1;
const PARLEY_E_BAD_JSON: i32 = -2;
const PARLEY_E_INTERNAL: i32 = -4;
const PARLEY_KIND_AGENT: u32 = 1;
const PARLEY_FLAG_THREAD_SAFE: u32 = 1;
const PARLEY_LOG_ERROR: i32 = 5;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ParleyStr {
    ptr: *const c_char,
    len: usize,
}

impl ParleyStr {
    fn of(s: &str) -> ParleyStr {
        ParleyStr { ptr: s.as_ptr() as *const c_char, len: s.len() }
    }
    /// Copies the view (borrowed only for the callback) into an owned String.
    unsafe fn to_string(self) -> Option<String> {
        if self.len == 0 {
            return Some(String::new());
        }
        if self.ptr.is_null() {
            return None;
        }
        let bytes = std::slice::from_raw_parts(self.ptr as *const u8, self.len);
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

type Host = c_void;
type Call = c_void;

#[repr(C)]
pub struct HostApi {
    struct_size: u32,
    abi_major: u32,
    abi_minor: u32,
    reserved: u32,
    host_version: *const c_char,
    log: Option<extern "C" fn(*mut Host, i32, ParleyStr)>,
    complete: Option<extern "C" fn(*mut Call, i32, ParleyStr) -> i32>,
    emit: Option<extern "C" fn(*mut Host, ParleyStr, ParleyStr) -> i32>,
    get_api: Option<extern "C" fn(*const c_char) -> Option<extern "C" fn()>>,
}

#[repr(C)]
pub struct PluginDef {
    struct_size: u32,
    abi_major: u32,
    abi_minor: u32,
    kind: u32,
    name: *const c_char,
    version: *const c_char,
    flags: u32,
    reserved: u32,
    state: *mut c_void,
    handle: Option<extern "C" fn(*mut c_void, *mut Call, ParleyStr) -> i32>,
    cancel: Option<extern "C" fn(*mut c_void, *mut Call)>,
    shutdown: Option<extern "C" fn(*mut c_void)>,
}

struct State {
    api: *const HostApi,
    host: *mut Host,
}

impl State {
    fn log(&self, level: i32, text: &str) {
        // SAFETY: the host table lives for the process lifetime.
        if let Some(log) = unsafe { (*self.api).log } {
            log(self.host, level, ParleyStr::of(text));
        }
    }
    fn complete(&self, call: *mut Call, status: i32, json: &str) -> i32 {
        match unsafe { (*self.api).complete } {
            Some(complete) => complete(call, status, ParleyStr::of(json)),
            None => PARLEY_E_INTERNAL,
        }
    }
}

// ---- entry points, each behind catch_unwind ----

#[no_mangle]
pub extern "C" fn parley_plugin_init_v1(api: *const HostApi, host: *mut Host, _config: ParleyStr) -> *const PluginDef {
    let result = catch_unwind(|| {
        if api.is_null() || unsafe { (*api).abi_major } != PARLEY_ABI_MAJOR {
            return std::ptr::null();
        }
        // Panics are reported through `complete` (see `handle`); keep the default hook from printing them.
        std::panic::set_hook(Box::new(|_| {}));
        let state = Box::into_raw(Box::new(State { api, host }));
        let def = Box::new(PluginDef {
            struct_size: std::mem::size_of::<PluginDef>() as u32,
            abi_major: PARLEY_ABI_MAJOR,
            abi_minor: PARLEY_ABI_MINOR,
            kind: PARLEY_KIND_AGENT,
            name: b"rustcalc\0".as_ptr() as *const c_char,
            version: b"1.0.0\0".as_ptr() as *const c_char,
            flags: PARLEY_FLAG_THREAD_SAFE,
            reserved: 0,
            state: state as *mut c_void,
            handle: Some(handle),
            cancel: None,
            shutdown: Some(shutdown),
        });
        Box::leak(def) as *const PluginDef // must outlive shutdown; a few bytes per instance
    });
    result.unwrap_or(std::ptr::null())
}

type StreamFn = extern "C" fn(*mut Call, ParleyStr) -> i32;

/// `parley_stream` (ABI 1.2) if the host has it.
fn stream_fn(api: *const HostApi) -> Option<StreamFn> {
    let get_api = unsafe { (*api).get_api }?;
    let f = get_api(b"parley_stream\0".as_ptr() as *const c_char)?;
    // SAFETY: parley.h documents "parley_stream" as a parley_stream_fn.
    Some(unsafe { std::mem::transmute::<extern "C" fn(), StreamFn>(f) })
}

/// Pointers are not Send; the host allows `stream` and `complete` from any thread.
struct CallOnThread {
    call: *mut Call,
    api: *const HostApi,
    host: *mut Host,
}
unsafe impl Send for CallOnThread {}

/// `explain EXPR`: streams "EXPR is VALUE." word by word from a thread, then completes with the whole text.
fn start_explaining(state: &State, call: *mut Call, expr: &str, ans: Option<f64>) -> i32 {
    let answer = match Calc::new(expr, ans).run() {
        Some(v) => format!("Let me work that out. {} comes to {}, step by step from the inside out.", expr.trim(), number(v)),
        None => format!("I cannot explain {:?}: it is not arithmetic I know.", expr.trim()),
    };
    let job = CallOnThread { call, api: state.api, host: state.host };
    let spawned = std::thread::Builder::new().name("rustcalc-explain".into()).spawn(move || {
        let job = job;
        let _ = catch_unwind(AssertUnwindSafe(|| {
            if let Some(stream) = stream_fn(job.api) {
                for (i, word) in answer.split(' ').enumerate() {
                    std::thread::sleep(std::time::Duration::from_millis(60));
                    let mut chunk = String::from("{\"text\":");
                    write_string(&mut chunk, &if i == 0 { word.to_string() } else { format!(" {word}") });
                    chunk.push('}');
                    if stream(job.call, ParleyStr::of(&chunk)) != PARLEY_OK {
                        break; // the turn is over (deadline or cancel): stop talking
                    }
                }
            }
            let mut reply = String::from("{\"responses\":[{\"text\":");
            write_string(&mut reply, &answer);
            reply.push_str("}]}");
            let state = State { api: job.api, host: job.host };
            state.complete(job.call, PARLEY_OK, &reply);
        }));
    });
    match spawned {
        Ok(_) => PARLEY_PENDING,
        Err(_) => PARLEY_E_INTERNAL,
    }
}

extern "C" fn handle(state: *mut c_void, call: *mut Call, request: ParleyStr) -> i32 {
    let state = unsafe { &*(state as *const State) };
    // The request view is valid only during this call: copy it first.
    let Some(text) = (unsafe { request.to_string() }) else { return PARLEY_E_BAD_JSON };
    if let Ok(root) = Json::parse(&text) {
        let said = root.get("message").and_then(|m| m.get("text")).and_then(Json::as_str).unwrap_or("").trim().to_string();
        if let Some(expr) = said.strip_prefix("explain ") {
            let ans = root.get("tracker").and_then(|t| t.get("slots")).and_then(|s| s.get("last_result")).and_then(Json::as_f64);
            return start_explaining(state, call, expr, ans);
        }
    }
    match catch_unwind(AssertUnwindSafe(|| reply_for(&text))) {
        Ok(Ok(reply)) => {
            state.complete(call, PARLEY_OK, &reply);
            PARLEY_OK
        }
        Ok(Err(message)) => {
            state.log(PARLEY_LOG_ERROR, &message);
            PARLEY_E_BAD_JSON
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            let mut error = String::from("{\"error\":{\"code\":\"panic\",\"message\":");
            write_string(&mut error, &what);
            error.push_str("}}");
            state.complete(call, PARLEY_E_INTERNAL, &error);
            PARLEY_OK
        }
    }
}

extern "C" fn shutdown(state: *mut c_void) {
    let _ = catch_unwind(|| unsafe { drop(Box::from_raw(state as *mut State)) });
}

// ---- the agent ----

fn reply_for(request: &str) -> Result<String, String> {
    let root = Json::parse(request).map_err(|e| format!("request is not JSON: {e}"))?;
    let text = root.get("message").and_then(|m| m.get("text")).and_then(Json::as_str).unwrap_or("").trim().to_string();
    let ans = root.get("tracker").and_then(|t| t.get("slots")).and_then(|s| s.get("last_result")).and_then(Json::as_f64);
    if text == "/panic" {
        panic!("the user asked for a panic");
    }
    let mut out = String::from("{\"events\":[");
    match Calc::new(&text, ans).run() {
        Some(value) => {
            out.push_str("{\"event\":\"slot\",\"name\":\"last_result\",\"value\":");
            out.push_str(&number(value));
            out.push_str("}],\"responses\":[{\"text\":");
            write_string(&mut out, &format!("= {}", number(value)));
            out.push_str("}]}");
        }
        None => {
            out.push_str("],\"responses\":[{\"text\":");
            let help = match ans {
                Some(a) => format!("I calculate. Try 2 * (3 + 4), or use ans (= {}).", number(a)),
                None => "I calculate. Try 2 * (3 + 4) or 2 ^ 10.".to_string(),
            };
            write_string(&mut out, &help);
            out.push_str(",\"buttons\":[{\"title\":\"2 * (3 + 4)\",\"payload\":\"2 * (3 + 4)\"},{\"title\":\"ans * 2\",\"payload\":\"ans * 2\"}]}]}");
        }
    }
    Ok(out)
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// Recursive-descent arithmetic: + - * / ^, parentheses, unary minus, `ans`.
struct Calc<'a> {
    s: &'a [u8],
    i: usize,
    ans: Option<f64>,
}

impl<'a> Calc<'a> {
    fn new(s: &'a str, ans: Option<f64>) -> Self {
        let s = s.strip_prefix("calc").unwrap_or(s);
        Calc { s: s.as_bytes(), i: 0, ans }
    }
    fn run(mut self) -> Option<f64> {
        if !self.s.iter().any(|c| c.is_ascii_digit()) && !self.s.windows(3).any(|w| w == b"ans") {
            return None;
        }
        let v = self.expr(0)?;
        self.ws();
        if self.i == self.s.len() && v.is_finite() { Some(v) } else { None }
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i] == b' ' {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn expr(&mut self, depth: u32) -> Option<f64> {
        let mut v = self.term(depth)?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term(depth)?;
            v = if op == b'+' { v + r } else { v - r };
        }
        Some(v)
    }
    fn term(&mut self, depth: u32) -> Option<f64> {
        let mut v = self.power(depth)?;
        while let Some(op @ (b'*' | b'/' | b'x')) = self.peek() {
            self.i += 1;
            let r = self.power(depth)?;
            v = if op == b'/' { v / r } else { v * r };
        }
        Some(v)
    }
    fn power(&mut self, depth: u32) -> Option<f64> {
        let base = self.unary(depth)?;
        if self.peek() == Some(b'^') {
            self.i += 1;
            let e = self.power(depth)?;
            return Some(base.powf(e));
        }
        Some(base)
    }
    fn unary(&mut self, depth: u32) -> Option<f64> {
        if depth > 64 {
            return None;
        }
        match self.peek()? {
            b'-' => {
                self.i += 1;
                Some(-self.unary(depth + 1)?)
            }
            b'(' => {
                self.i += 1;
                let v = self.expr(depth + 1)?;
                if self.peek()? != b')' {
                    return None;
                }
                self.i += 1;
                Some(v)
            }
            b'a' if self.s[self.i..].starts_with(b"ans") => {
                self.i += 3;
                self.ans
            }
            c if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len() && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.') {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
            }
            _ => None,
        }
    }
}

// ---- a small JSON reader and string writer ----

#[allow(dead_code)] // every JSON value is parsed; the agent reads only some kinds
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(s: &str) -> Result<Json, String> {
        let mut p = Parser { s: s.as_bytes(), i: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() { Err(format!("trailing bytes at {}", p.i)) } else { Ok(v) }
    }
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        if let Json::Str(s) = self { Some(s) } else { None }
    }
    fn as_f64(&self) -> Option<f64> {
        if let Json::Num(n) = self { Some(*n) } else { None }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit} at {}", self.i))
        }
    }
    fn value(&mut self, depth: u32) -> Result<Json, String> {
        if depth > 128 {
            return Err("too deep".into());
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    members.push((key, self.value(depth + 1)?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at {start}"))
            }
            None => Err("unexpected end".into()),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out: Vec<u8> = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| "invalid UTF-8".to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    let ch = match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4).ok_or("bad \\u")?).map_err(|_| "bad \\u")?;
                            self.i += 4;
                            let mut cp = u32::from_str_radix(hex, 16).map_err(|_| "bad \\u")?;
                            if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                let lo = std::str::from_utf8(self.s.get(self.i + 2..self.i + 6).ok_or("bad \\u")?).map_err(|_| "bad \\u")?;
                                let lo = u32::from_str_radix(lo, 16).map_err(|_| "bad \\u")?;
                                self.i += 6;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            char::from_u32(cp).unwrap_or('\u{FFFD}')
                        }
                        other => other as char,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
        Err("unterminated string".into())
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
