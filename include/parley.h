/*
** parley.h -- the Parley plugin ABI, version 1.2.
**
** A plugin is a shared object that exports ONE function, parley_plugin_init_v1. Parley loads it with
** dlopen(RTLD_NOW | RTLD_LOCAL), calls the entry once per configured instance, and never unloads the
** library. Everything else crosses the boundary through two tables of plain C types:
**
**   parley_host_api    host -> plugin: logging, completing a call, emitting a proactive message,
**                      looking up newer host functions by name.
**   parley_plugin_def  plugin -> host: identity, ABI version, kind, flags, state, and the handle /
**                      cancel / shutdown hooks.
**
** Messages cross as UTF-8 JSON in Rasa's shapes (see "PAYLOADS" below), so new fields never change
** the ABI and a Rasa user recognises every payload.
**
** This header is pure C99, includes only standard headers and compiles as C99, C11 and C++17 with
** -Wall -Wextra -Werror -pedantic. It is the single source of truth; docs/plugins.md is the guide.
**
** CONVENTIONS
**   - Names: parley_* types and functions, PARLEY_* macros and constants.
**   - Every type and function has a doc block with OWNERSHIP (who owns every pointer and for how long)
**     and THREADS (which threads may call it, or on which threads the host calls it).
**   - Strings are parley_str views {ptr, len}: UTF-8, NOT NUL-terminated, may contain no NUL bytes.
**     {NULL, 0} is the empty string; {NULL, n > 0} is invalid and refused.
**   - Each side frees only what it allocated. The host copies every byte the plugin hands it before the
**     host function returns; views the host hands the plugin are valid only during the callback.
**
** VERSIONING POLICY
**   - PARLEY_ABI_MAJOR changes only for a breaking change; the entry symbol carries it
**     (parley_plugin_init_v1, parley_plugin_init_v2, ...), so an old plugin is never called through a
**     new, incompatible contract.
**   - PARLEY_ABI_MINOR grows for additive changes: new fields APPENDED to the end of a struct (both
**     structs start with struct_size, so either side sees what the other was built with), new status
**     codes, new host functions (appended to parley_host_api AND reachable by name via get_api), new
**     JSON keys, new PARLEY_FLAG_* bits (a host older than the bit ignores it, so a flag may only ask
**     the host for less work, never change what a call means).
**   - History: 1.0 first release. 1.1 PARLEY_FLAG_NO_TRACKER_EVENTS. 1.2 parley_host_api.stream
**     ("parley_stream"): partial text of an agent's reply while its call runs.
**   - The host loads a plugin when plugin major == host major and plugin minor <= host minor.
**   - Fields and functions are never removed, reordered or retyped within a major version.
**
** PAYLOADS (UTF-8 JSON, always a JSON object)
**   Agent request, handed to handle(): Rasa's action-server request shape
**     {"sender_id": "abc",
**      "message":  {"text": "hi", "message_id": "...", "metadata": {...}, "input_channel": "socketio"},
**      "tracker":  {"sender_id": "abc", "slots": {...}, "latest_message": {...}, "events": [...]}}
**   Agent reply, passed to complete(): Rasa's action-server response shape
**     {"events": [{"event": "slot", "name": "x", "value": 1}, ...],
**      "responses": [{"text": "hi", "buttons": [{"title": "Yes", "payload": "/yes"}]}, ...]}
**     Both keys are optional (missing = empty). Every element must be a JSON object. Responses are Rasa
**     response dicts: "text", "buttons", "quick_replies", "image", "attachment", "elements", "custom".
**   NATIVE ACTIONS: an agent asks the host to run a native action (for example a C function bound with
**     libffi by an actions manifest) by putting the event {"event": "action", "name": "action_x"} in its
**     reply's "events". After the agent's reply the dispatcher runs each such action that an action
**     runner provides, in order, records its events (e.g. slot sets) and sends its responses in the same
**     turn. An action name that no runner provides is not run; the dispatcher logs it.
**   Formatter request, handed to handle():
**     {"channel": "socketio", "sender_id": "abc", "responses": [{...}, ...]}
**   Formatter reply, passed to complete():
**     {"responses": [{...}, ...]}       (a formatter returns responses it does not handle unchanged)
**   Error reply (any kind), passed to complete() with a negative status (optional, may be empty):
**     {"error": {"code": "string", "message": "string"}}
**   Proactive message, passed to emit():
**     {"responses": [{...}, ...]}       (optionally "channel": "socketio")
**   Stream chunk, passed to stream() (1.2) while an agent call runs:
**     {"text": "the next words"}        (appended to what the user sees; the final reply passed to
**                                        complete() is what is stored and replaces the streamed text)
*/
#ifndef PARLEY_H
#define PARLEY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
** PARLEY_ABI_MAJOR, PARLEY_ABI_MINOR, PARLEY_ABI_VERSION, PARLEY_ABI_VERSION_NUMBER -- ABI version.
**   The compile-time version of this header. The same values are readable at run time: the host puts
**   its own in parley_host_api.abi_major / abi_minor, the plugin reports the ones it was built with in
**   parley_plugin_def.abi_major / abi_minor. PARLEY_ABI_VERSION_NUMBER is major * 1000 + minor.
*/
#define PARLEY_ABI_MAJOR 1
#define PARLEY_ABI_MINOR 2
#define PARLEY_ABI_VERSION "1.2"
#define PARLEY_ABI_VERSION_NUMBER (PARLEY_ABI_MAJOR * 1000 + PARLEY_ABI_MINOR)

/*
** PARLEY_PLUGIN_INIT_SYMBOL -- the name of the one required export, as a string (for dlsym).
*/
#define PARLEY_PLUGIN_INIT_SYMBOL "parley_plugin_init_v1"

/*
** PARLEY_EXPORT -- marks the entry point for export. Build C plugins with -fvisibility=hidden so that
**   only the entry point is exported. Define PARLEY_EXPORT yourself before including this header to
**   override it.
*/
#ifndef PARLEY_EXPORT
#if defined(_WIN32)
#define PARLEY_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define PARLEY_EXPORT __attribute__((visibility("default")))
#else
#define PARLEY_EXPORT
#endif
#endif

/*
** parley_status -- the result of every fallible call in either direction.
**   Zero is success, PARLEY_PENDING is "later", negative values are errors. New codes may be added in a
**   minor version: treat any unknown negative value as an error.
**   PARLEY_OK                  success.
**   PARLEY_PENDING             returned by handle(): the plugin will call complete() later (any thread).
**   PARLEY_E_INVALID           an argument is invalid: NULL where a string or handle is required, a
**                              parley_str {NULL, n > 0}, an unknown handle, PARLEY_PENDING passed to
**                              complete().
**   PARLEY_E_BAD_JSON          the JSON is not valid UTF-8 JSON or not the documented shape.
**   PARLEY_E_UNSUPPORTED       the host or plugin does not provide this (e.g. emit without an output).
**   PARLEY_E_INTERNAL          an internal failure (a caught panic, an allocation failure).
**   PARLEY_E_EXPIRED           complete() for a call whose deadline passed, or that was cancelled: the
**                              completion was dropped. Not an error in the plugin; free and move on.
**   PARLEY_E_ALREADY_COMPLETED complete() for a call that was already completed: the second completion
**                              was dropped. This IS a plugin bug (complete exactly once).
**   PARLEY_E_CANCELLED         a plugin may complete a call with this status after its cancel hook ran.
**   PARLEY_E_CLOSED            the host is shutting down; nothing more is accepted.
**   PARLEY_E_BUSY              a bounded host queue is full (emit); try again later or drop.
**   PARLEY_E_VERSION           a version requirement is not met.
**   OWNERSHIP: a plain value. THREADS: any.
*/
typedef enum parley_status {
    PARLEY_OK = 0,
    PARLEY_PENDING = 1,
    PARLEY_E_INVALID = -1,
    PARLEY_E_BAD_JSON = -2,
    PARLEY_E_UNSUPPORTED = -3,
    PARLEY_E_INTERNAL = -4,
    PARLEY_E_EXPIRED = -5,
    PARLEY_E_ALREADY_COMPLETED = -6,
    PARLEY_E_CANCELLED = -7,
    PARLEY_E_CLOSED = -8,
    PARLEY_E_BUSY = -9,
    PARLEY_E_VERSION = -10
} parley_status;

/*
** parley_log_level -- severity of a log line (the swift-log levels).
**   OWNERSHIP: a plain value. THREADS: any.
*/
typedef enum parley_log_level {
    PARLEY_LOG_TRACE = 0,
    PARLEY_LOG_DEBUG = 1,
    PARLEY_LOG_INFO = 2,
    PARLEY_LOG_NOTICE = 3,
    PARLEY_LOG_WARNING = 4,
    PARLEY_LOG_ERROR = 5,
    PARLEY_LOG_CRITICAL = 6
} parley_log_level;

/*
** parley_plugin_kind -- what a plugin does; the host refuses a plugin configured in the wrong slot.
**   PARLEY_KIND_AGENT      gets the user message and the conversation, returns events and responses.
**   PARLEY_KIND_FORMATTER  gets the outgoing responses for a channel, returns transformed responses.
**   OWNERSHIP: a plain value (stored as uint32_t in parley_plugin_def.kind). THREADS: any.
*/
typedef enum parley_plugin_kind {
    PARLEY_KIND_AGENT = 1,
    PARLEY_KIND_FORMATTER = 2
} parley_plugin_kind;

/*
** PARLEY_FLAG_* -- bits for parley_plugin_def.flags.
**   PARLEY_FLAG_THREAD_SAFE  handle() may run concurrently for DIFFERENT conversations (calls for one
**                            conversation are always serialized). Without it the host runs at most one
**                            handle() of this plugin at a time. PARLEY_FLAG_CONCURRENT is a synonym.
**   PARLEY_FLAG_NO_TRACKER_EVENTS  (ABI 1.1) the agent does not read tracker.events: the host sends
**                            "events": [] (the rest of the tracker -- slots, latest_message, paused --
**                            as usual), which saves copying up to 50 events into every request. The
**                            configuration key agents[].tracker_events overrides it. Hosts before 1.1
**                            ignore the bit and send the events.
*/
#define PARLEY_FLAG_THREAD_SAFE 0x1u
#define PARLEY_FLAG_CONCURRENT PARLEY_FLAG_THREAD_SAFE
#define PARLEY_FLAG_NO_TRACKER_EVENTS 0x2u

/*
** parley_str -- a borrowed UTF-8 byte view: ptr + length, not NUL-terminated.
**   OWNERSHIP: never transfers. The side that passes a parley_str keeps owning the bytes; the receiver
**     copies what it needs before returning (or, for views given to a plugin callback, before the
**     callback returns). {NULL, 0} is the empty string.
**   THREADS: a plain value; no thread rules of its own.
*/
typedef struct parley_str {
    const char *ptr;
    size_t len;
} parley_str;

/*
** parley_host -- opaque handle for one plugin instance inside the host.
**   OWNERSHIP: host-owned; valid from the entry call until the process exits (also after shutdown, when
**     emit() refuses with PARLEY_E_CLOSED). Never free it; never dereference it.
**   THREADS: may be passed to log/emit from any thread.
*/
typedef struct parley_host parley_host;

/*
** parley_call -- opaque handle for one request handed to handle().
**   OWNERSHIP: host-owned. It names the call; the host keeps enough to answer complete() on it for the
**     life of the process, so a late, duplicate or foreign complete() gets a status, never a crash.
**   THREADS: may be passed to complete() from any thread.
*/
typedef struct parley_call parley_call;

/*
** parley_fn -- a generic function pointer, as returned by get_api; cast it to the documented type.
**   OWNERSHIP: points into the host's code; valid for the process lifetime. THREADS: as documented for
**     the function it points to.
*/
typedef void (*parley_fn)(void);

/*
** parley_log_fn -- parley_host_api.log: writes one log line tagged with the plugin's name.
**   @param host     the handle given to the entry point.
**   @param level    a parley_log_level.
**   @param message  the text (no trailing newline needed).
**   OWNERSHIP: message is borrowed; the host copies it before returning.
**   THREADS: any thread, any time (also inside the entry point and hooks). Never blocks on the plugin.
*/
typedef void (*parley_log_fn)(parley_host *host, parley_log_level level, parley_str message);

/*
** parley_complete_fn -- parley_host_api.complete: delivers the result of a call, EXACTLY ONCE per call.
**   @param call    the handle given to handle().
**   @param status  PARLEY_OK with the reply JSON, or a negative status (the call failed; json may carry
**                  {"error": {...}} or be empty). PARLEY_PENDING is invalid here.
**   @param json    the reply (see PAYLOADS); {NULL, 0} with PARLEY_OK means "{}".
**   @return PARLEY_OK            accepted.
**           PARLEY_E_EXPIRED     the call's deadline passed or it was cancelled; the reply was dropped.
**           PARLEY_E_ALREADY_COMPLETED  the call was completed before; this reply was dropped (plugin bug).
**           PARLEY_E_BAD_JSON    json is not valid JSON, or valid JSON of another shape than PAYLOADS
**                                documents (e.g. {"responses": "x"} or {"responses": [1]}); the call
**                                failed (the user gets the fallback).
**           PARLEY_E_INVALID     unknown call, {NULL, n > 0} json or PARLEY_PENDING; the call (if known)
**                                failed.
**   Complete every call exactly once, also after cancel or expiry (then PARLEY_E_EXPIRED comes back):
**   that is when the plugin frees what it kept for the call.
**   OWNERSHIP: json is borrowed; the host copies it before returning, so the plugin may free it at once.
**   THREADS: any thread, also from inside handle() (synchronous completion). The host never calls back
**     into the plugin from inside complete().
*/
typedef parley_status (*parley_complete_fn)(parley_call *call, parley_status status, parley_str json);

/*
** parley_emit_fn -- parley_host_api.emit: queues a proactive message to a conversation (a reminder, a
**   notification), delivered to every client of that conversation through the host's proactive output.
**   @param host       the handle given to the entry point.
**   @param sender_id  the conversation id (Rasa sender_id); must not be empty.
**   @param json       {"responses": [...]} (optionally "channel"); see PAYLOADS.
**   @return PARLEY_OK (queued), PARLEY_E_INVALID (empty sender_id, bad view), PARLEY_E_BAD_JSON,
**           PARLEY_E_UNSUPPORTED (the host has no proactive output configured), PARLEY_E_BUSY (queue
**           full), PARLEY_E_CLOSED (host shutting down).
**   OWNERSHIP: both views are borrowed; the host copies them before returning.
**   THREADS: any thread. Delivery happens later, never inside emit().
*/
typedef parley_status (*parley_emit_fn)(parley_host *host, parley_str sender_id, parley_str json);

/*
** parley_stream_fn -- parley_host_api.stream (ABI 1.2; also get_api("parley_stream")): sends partial text
**   of an agent's reply while the call runs (an LLM answering token by token). The host shows it to the
**   conversation's clients at once (Rasa Pro's stream_start / stream_chunk / stream_end on Socket.IO); the
**   reply passed to complete() afterwards is the message that is stored and sent as the final bot message.
**   @param call   the handle given to handle(), before its complete().
**   @param json   {"text": "the next words"} (see PAYLOADS).
**   @return PARLEY_OK            shown (queued to the clients).
**           PARLEY_E_EXPIRED     the call was completed, cancelled or past its deadline; nothing was shown.
**           PARLEY_E_BAD_JSON    json is not valid JSON or not {"text": string}.
**           PARLEY_E_INVALID     unknown call or {NULL, n > 0} json.
**           PARLEY_E_UNSUPPORTED the call is not an agent turn (a formatter's call), so there is nothing to
**                                stream to; complete() still works.
**   OWNERSHIP: json is borrowed; the host copies it before returning.
**   THREADS: any thread, also from inside handle(). Chunks of one call are shown in the order of the calls
**     to stream() (call it from one thread at a time per call to keep an order). Never blocks on clients.
*/
typedef parley_status (*parley_stream_fn)(parley_call *call, parley_str json);

/*
** parley_get_api_fn -- parley_host_api.get_api: looks up a host function by name.
**   @param name  a NUL-terminated name: "parley_log", "parley_complete", "parley_emit", "parley_get_api"
**                in 1.0; "parley_stream" from 1.2; a function added in 1.N is also published here under
**                its documented name.
**   @return the function (cast to its documented type), or NULL if this host does not provide it.
**   OWNERSHIP: name is borrowed for the call. The returned pointer stays valid for the process lifetime.
**   THREADS: any thread.
*/
typedef parley_fn (*parley_get_api_fn)(const char *name);

/*
** parley_host_api -- the host's function table, handed to the entry point.
**   APPEND-ONLY: new members go at the end and bump PARLEY_ABI_MINOR. Before using a member added after
**   1.0, check PARLEY_API_HAS(api, member) (the host may be older than the header you built with).
**   struct_size  sizeof(parley_host_api) as the HOST compiled it.
**   abi_major, abi_minor  the host's ABI version (the run-time counterpart of the macros).
**   host_version  the host program's version, e.g. "parley 0.1.0" (NUL-terminated).
**   OWNERSHIP: host-owned and immutable; valid for the process lifetime. Keep the pointer.
**   THREADS: read from any thread; each function states its own rules.
*/
typedef struct parley_host_api {
    uint32_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t reserved;
    const char *host_version;
    parley_log_fn log;
    parley_complete_fn complete;
    parley_emit_fn emit;
    parley_get_api_fn get_api;
    /* 1.2 */
    parley_stream_fn stream;
} parley_host_api;

/*
** PARLEY_API_HAS -- whether the host's parley_host_api is large enough to contain a member, i.e. the
**   host was built with a header that has it. Example: if (PARLEY_API_HAS(api, emit)) api->emit(...);
*/
#define PARLEY_API_HAS(api, member) \
    ((api)->struct_size >= offsetof(parley_host_api, member) + sizeof((api)->member))

/*
** parley_handle_fn -- parley_plugin_def.handle: handles one request (agent turn or formatter pass).
**   @param state  parley_plugin_def.state.
**   @param call   names this request; pass it to complete() exactly once.
**   @param request_json  the request (see PAYLOADS).
**   @return PARLEY_OK       complete() was already called (synchronous reply).
**           PARLEY_PENDING  complete() will be called later, from any thread.
**           negative        the request failed now; do NOT call complete() for it (the user gets the
**                           fallback and the host logs the status).
**   The host enforces a deadline (default 10 s) from the start of the call: after it the user gets the
**   fallback, cancel() is called and the late complete() returns PARLEY_E_EXPIRED.
**   OWNERSHIP: request_json is borrowed and valid ONLY until handle() returns; copy what a pending
**     call needs. As a convenience for C, request_json.ptr[request_json.len] is a NUL byte.
**     call stays a valid name for complete() forever (see parley_call).
**   THREADS: called on a host worker thread, never on an I/O event loop. Calls for one conversation are
**     never concurrent. Calls for different conversations are concurrent only with
**     PARLEY_FLAG_THREAD_SAFE; otherwise at most one handle() of the plugin runs at a time (a pending
**     call does not count: handle() has returned).
*/
typedef parley_status (*parley_handle_fn)(void *state, parley_call *call, parley_str request_json);

/*
** parley_cancel_fn -- parley_plugin_def.cancel (optional, may be NULL): a call expired or was
**   cancelled; stop working on it soon. The plugin must still complete() it (that returns
**   PARLEY_E_EXPIRED) so it can free what it kept for the call.
**   OWNERSHIP: as for handle(); no request bytes are passed.
**   THREADS: called on a host worker thread, possibly WHILE handle() for the same call is still
**     running on another thread (that is what it is for): it must be thread-safe. At most once per call.
*/
typedef void (*parley_cancel_fn)(void *state, parley_call *call);

/*
** parley_shutdown_fn -- parley_plugin_def.shutdown (optional, may be NULL): the host is stopping.
**   Called at most once, after every handle() of this instance returned; no call starts after it. If a
**   handle() is still running when the host's drain deadline passes, the hook is NOT called: the call is
**   abandoned with the process (so the hook never runs concurrently with handle()). Calls that returned
**   PARLEY_PENDING may still be uncompleted: a later complete() gets an error status, never a crash.
**   Free state here. The library itself stays mapped (it is never dlclosed).
**   OWNERSHIP: the plugin frees its own state; the def must stay valid until shutdown returns.
**   THREADS: a host worker thread; never concurrent with handle() of this instance.
*/
typedef void (*parley_shutdown_fn)(void *state);

/*
** parley_plugin_def -- what a plugin is; returned by the entry point.
**   SIZE-PREFIXED, APPEND-ONLY: set struct_size = sizeof(parley_plugin_def). The host reads only
**   struct_size bytes and treats later members as zero/NULL, so a plugin built against an older header
**   keeps working.
**   struct_size  sizeof(parley_plugin_def) as the PLUGIN compiled it.
**   abi_major    PARLEY_ABI_MAJOR; must equal the host's.
**   abi_minor    PARLEY_ABI_MINOR; must be <= the host's.
**   kind         a parley_plugin_kind.
**   name         NUL-terminated, unique among the loaded plugins, [A-Za-z0-9_.-] recommended.
**   version      NUL-terminated plugin version, e.g. "1.2.0" (may be NULL: "unknown").
**   flags        PARLEY_FLAG_* bits.
**   state        passed back to every hook.
**   handle       required.  cancel, shutdown  optional (NULL).
**   OWNERSHIP: plugin-owned. The def, name and version must stay valid and unchanged until shutdown
**     returns (a static def is simplest). state is plugin-owned; the host never frees or inspects it.
**   THREADS: the host reads the def once, right after the entry point returns.
*/
typedef struct parley_plugin_def {
    uint32_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t kind;
    const char *name;
    const char *version;
    uint32_t flags;
    uint32_t reserved;
    void *state;
    parley_handle_fn handle;
    parley_cancel_fn cancel;
    parley_shutdown_fn shutdown;
} parley_plugin_def;

/*
** parley_plugin_init_fn / parley_plugin_init_v1 -- THE entry point, the only symbol a plugin exports.
**   @param api          the host's function table.
**   @param host         this instance's handle, for log() and emit().
**   @param config_json  the instance's configuration from the host's configuration file (a JSON object;
**                       "{}" when none).
**   @return the plugin's def, or NULL to refuse loading (log the reason with api->log first).
**   Called once per configured instance (the same library may be configured twice under different
**   names; keep per-instance data in state). Check api->abi_major / PARLEY_API_HAS before relying on
**   newer host functions.
**   OWNERSHIP: api and host stay valid for the process lifetime (keep them). config_json is borrowed
**     until the entry point returns. The returned def is plugin-owned (see parley_plugin_def).
**   THREADS: called on a host thread before any other call to the plugin instance; may call log().
*/
typedef const parley_plugin_def *(*parley_plugin_init_fn)(const parley_host_api *api, parley_host *host,
                                                          parley_str config_json);

#ifndef PARLEY_NO_ENTRY_PROTOTYPE
PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v1(const parley_host_api *api, parley_host *host,
                                                             parley_str config_json);
#endif

/*
** parley_str_from_cstr -- convenience: a view of a NUL-terminated string (NULL gives {NULL, 0}).
**   OWNERSHIP: the view borrows s. THREADS: any.
*/
static inline parley_str parley_str_from_cstr(const char *s) {
    parley_str r;
    size_t n = 0;
    if (s != NULL) {
        while (s[n] != '\0') { n++; }
    }
    r.ptr = s;
    r.len = n;
    return r;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PARLEY_H */
