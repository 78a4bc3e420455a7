/*
** markdown -- a Parley formatter plugin (C): turns Markdown in "text" responses into the small HTML subset
** web chat widgets render, and leaves every other response and key untouched.
**   **bold** __bold__  ->  <b>bold</b>        *italic* _italic_  ->  <i>italic</i>
**   [label](https://x)  ->  <a href="https://x">label</a>   (http, https, mailto and relative URLs only)
**   newline -> <br>;  & < > " are escaped first, so user text can never inject HTML;  \* \_ \[ are literals.
** Config (optional): {"channels": ["socketio", ...]} applies it only to those channels (default: all).
** Stateless apart from its config, so thread-safe.
*/
#include "parley.h"
#include "pjson.h"

#include <ctype.h>

#define MAX_CHANNELS 8

typedef struct markdown {
    parley_plugin_def def;
    const parley_host_api *api;
    parley_host *host;
    int nchannels;
    char channels[MAX_CHANNELS][32];
} markdown;

static void put_escaped_char(pj_buf *b, char c) {
    switch (c) {
    case '&': pj_puts(b, "&amp;"); break;
    case '<': pj_puts(b, "&lt;"); break;
    case '>': pj_puts(b, "&gt;"); break;
    case '"': pj_puts(b, "&quot;"); break;
    case '\n': pj_puts(b, "<br>"); break;
    default: pj_put(b, &c, 1); break;
    }
}

static int is_word(char c) { return isalnum((unsigned char)c) != 0; }

/* Index of the closing delimiter `d` (length dn) in s[from, end), or -1. */
static long find_close(const char *s, size_t from, size_t end, const char *d, size_t dn) {
    for (size_t i = from; i + dn <= end; i++) {
        if (s[i] == '\\') { i++; continue; }
        if (memcmp(s + i, d, dn) == 0) {
            if (dn == 1 && i + 1 < end && s[i + 1] == d[0]) { i++; continue; } /* part of a double */
            if (d[0] == '_' && i + dn < end && is_word(s[i + dn])) continue;  /* snake_case */
            if (d[0] != ']' && isspace((unsigned char)s[i - 1])) continue;     /* "a * b" is not a closer */
            if (i > from) return (long)i;
        }
    }
    return -1;
}

static int safe_url(const char *u, size_t n) {
    if (n >= 8 && strncmp(u, "https://", 8) == 0) return 1;
    if (n >= 7 && strncmp(u, "http://", 7) == 0) return 1;
    if (n >= 7 && strncmp(u, "mailto:", 7) == 0) return 1;
    for (size_t i = 0; i < n; i++) { /* relative: no scheme */
        if (u[i] == ':') return 0;
        if (u[i] == '/' || u[i] == '?' || u[i] == '#') return 1;
    }
    return 1;
}

static void convert(pj_buf *out, const char *s, size_t begin, size_t end, int depth) {
    size_t i = begin;
    while (i < end) {
        char c = s[i];
        if (c == '\\' && i + 1 < end && strchr("*_[]\\", s[i + 1])) {
            put_escaped_char(out, s[i + 1]);
            i += 2;
            continue;
        }
        if (depth < 8 && (c == '*' || c == '_')) {
            int dbl = i + 1 < end && s[i + 1] == c;
            char d[2] = {c, c};
            size_t dn = dbl ? 2 : 1;
            int opens = (c == '*' || i == begin || !is_word(s[i - 1])) && i + dn < end && !isspace((unsigned char)s[i + dn]);
            long close = opens ? find_close(s, i + dn, end, d, dn) : -1;
            if (close > 0) {
                pj_puts(out, dbl ? "<b>" : "<i>");
                convert(out, s, i + dn, (size_t)close, depth + 1);
                pj_puts(out, dbl ? "</b>" : "</i>");
                i = (size_t)close + dn;
                continue;
            }
        }
        if (depth < 8 && c == '[') {
            long mid = find_close(s, i + 1, end, "]", 1);
            if (mid > 0 && (size_t)mid + 1 < end && s[mid + 1] == '(') {
                const char *u = s + mid + 2;
                const char *close = memchr(u, ')', end - (size_t)(mid + 2));
                if (close && close > u && safe_url(u, (size_t)(close - u)) && !memchr(u, ' ', (size_t)(close - u))) {
                    pj_puts(out, "<a href=\"");
                    for (const char *p = u; p < close; p++) put_escaped_char(out, *p);
                    pj_puts(out, "\">");
                    convert(out, s, i + 1, (size_t)mid, depth + 1);
                    pj_puts(out, "</a>");
                    i = (size_t)(close - s) + 1;
                    continue;
                }
            }
        }
        put_escaped_char(out, c);
        i++;
    }
}

static int channel_enabled(const markdown *m, pj_span channel_tok) {
    char channel[32];
    if (m->nchannels == 0) return 1;
    if (pj_string(channel_tok, channel, sizeof channel) < 0) return 0;
    for (int i = 0; i < m->nchannels; i++) {
        if (strcmp(channel, m->channels[i]) == 0) return 1;
    }
    return 0;
}

static parley_status markdown_handle(void *state, parley_call *call, parley_str request) {
    const markdown *m = (const markdown *)state;
    pj_span root = {request.ptr, request.len}, responses, channel, element, key, value;
    if (!pj_get(root, "responses", &responses)) return PARLEY_E_BAD_JSON;
    int enabled = !pj_get(root, "channel", &channel) || channel_enabled(m, channel);

    pj_buf out = {NULL, 0, 0, 1};
    pj_puts(&out, "{\"responses\":");
    if (!enabled) {
        pj_put_span(&out, responses); /* untouched */
    } else {
        pj_puts(&out, "[");
        const char *cursor = NULL;
        for (int n = 0; pj_array_next(responses, &cursor, &element); n++) {
            if (n) pj_puts(&out, ",");
            if (!pj_is_object(element)) { pj_put_span(&out, element); continue; }
            pj_puts(&out, "{");
            const char *members = NULL;
            for (int k = 0; pj_object_next(element, &members, &key, &value); k++) {
                if (k) pj_puts(&out, ",");
                pj_put_span(&out, key);
                pj_puts(&out, ":");
                if (key.n == 6 && memcmp(key.p, "\"text\"", 6) == 0 && pj_is_string(value)) {
                    char *text = (char *)malloc(value.n + 1);
                    long len = text ? pj_string(value, text, value.n + 1) : -1;
                    if (len < 0) {
                        pj_put_span(&out, value);
                    } else {
                        pj_buf html = {NULL, 0, 0, 1};
                        convert(&html, text, 0, (size_t)len, 0);
                        pj_put_string(&out, html.p ? html.p : "", html.n);
                        out.ok &= html.ok;
                        free(html.p);
                    }
                    free(text);
                } else {
                    pj_put_span(&out, value);
                }
            }
            pj_puts(&out, "}");
        }
        pj_puts(&out, "]");
    }
    pj_puts(&out, "}");
    if (!out.ok) {
        free(out.p);
        return PARLEY_E_INTERNAL;
    }
    parley_str reply = {out.p, out.n};
    m->api->complete(call, PARLEY_OK, reply);
    free(out.p);
    return PARLEY_OK;
}

static void markdown_shutdown(void *state) { free(state); }

PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v1(const parley_host_api *api, parley_host *host,
                                                             parley_str config_json) {
    if (api == NULL || api->abi_major != PARLEY_ABI_MAJOR) return NULL;
    markdown *m = (markdown *)calloc(1, sizeof *m);
    if (!m) return NULL;
    m->api = api;
    m->host = host;
    pj_span config = {config_json.ptr, config_json.len}, channels, element;
    if (pj_get(config, "channels", &channels)) {
        const char *cursor = NULL;
        while (m->nchannels < MAX_CHANNELS && pj_array_next(channels, &cursor, &element)) {
            if (pj_string(element, m->channels[m->nchannels], sizeof m->channels[0]) < 0) {
                api->log(host, PARLEY_LOG_ERROR, parley_str_from_cstr("config \"channels\" must be a list of short strings"));
                free(m);
                return NULL;
            }
            m->nchannels++;
        }
    }
    m->def.struct_size = sizeof(parley_plugin_def);
    m->def.abi_major = PARLEY_ABI_MAJOR;
    m->def.abi_minor = PARLEY_ABI_MINOR;
    m->def.kind = PARLEY_KIND_FORMATTER;
    m->def.name = "markdown";
    m->def.version = "1.0.0";
    m->def.flags = PARLEY_FLAG_THREAD_SAFE;
    m->def.state = m;
    m->def.handle = markdown_handle;
    m->def.shutdown = markdown_shutdown;
    return &m->def;
}
