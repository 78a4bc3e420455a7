/*
** pjson.h -- a tiny JSON scanner and writer for example Parley plugins (C99, header-only, no allocation
** except pj_buf). It reads JSON in place: a pj_span is a raw token (an object, array, string, number,
** true/false/null) inside the request, so values can be copied to the reply without re-encoding.
** Not a validating parser: the host already sends valid JSON; this only has to find things in it.
*/
#ifndef PJSON_H
#define PJSON_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct pj_span {
    const char *p;
    size_t n;
} pj_span;

static inline const char *pj_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Returns the end of the value starting at p (after whitespace), or NULL if malformed. */
static inline const char *pj_skip(const char *p, const char *end) {
    int depth = 0;
    p = pj_ws(p, end);
    if (p >= end) return NULL;
    do {
        if (p >= end) return NULL;
        char c = *p;
        if (c == '"') {
            p++;
            while (p < end && *p != '"') p += (*p == '\\') ? 2 : 1;
            if (p >= end) return NULL;
            p++;
        } else if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            depth--;
            p++;
        } else if (c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (depth == 0) return p;
            p++;
        } else {
            while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') p++;
        }
        if (depth < 0) return NULL;
    } while (depth > 0);
    return p;
}

/* Iterates an object's members: start with *cursor = NULL. Returns 1 with key (a string token) and value. */
static inline int pj_object_next(pj_span obj, const char **cursor, pj_span *key, pj_span *value) {
    const char *end = obj.p + obj.n;
    const char *p = *cursor ? *cursor : pj_ws(obj.p, end) + 1;
    if (!*cursor && (obj.n == 0 || *pj_ws(obj.p, end) != '{')) return 0;
    p = pj_ws(p, end);
    if (p < end && *p == ',') p = pj_ws(p + 1, end);
    if (p >= end || *p != '"') return 0;
    const char *kend = pj_skip(p, end);
    if (!kend) return 0;
    key->p = p;
    key->n = (size_t)(kend - p);
    p = pj_ws(kend, end);
    if (p >= end || *p != ':') return 0;
    p = pj_ws(p + 1, end);
    const char *vend = pj_skip(p, end);
    if (!vend) return 0;
    value->p = p;
    value->n = (size_t)(vend - p);
    *cursor = vend;
    return 1;
}

/* Iterates an array's elements: start with *cursor = NULL. */
static inline int pj_array_next(pj_span arr, const char **cursor, pj_span *element) {
    const char *end = arr.p + arr.n;
    const char *p = *cursor ? *cursor : pj_ws(arr.p, end) + 1;
    if (!*cursor && (arr.n == 0 || *pj_ws(arr.p, end) != '[')) return 0;
    p = pj_ws(p, end);
    if (p < end && *p == ',') p = pj_ws(p + 1, end);
    if (p >= end || *p == ']') return 0;
    const char *vend = pj_skip(p, end);
    if (!vend) return 0;
    element->p = p;
    element->n = (size_t)(vend - p);
    *cursor = vend;
    return 1;
}

/* Decodes a string token into out (NUL-terminated, at most cap-1 bytes). Returns the length or -1. */
static inline long pj_string(pj_span tok, char *out, size_t cap) {
    size_t o = 0;
    if (tok.n < 2 || tok.p[0] != '"' || cap == 0) return -1;
    for (size_t i = 1; i + 1 < tok.n; i++) {
        char c = tok.p[i];
        if (c == '\\' && i + 2 < tok.n) {
            char e = tok.p[++i];
            unsigned long cp = 0;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u':
                if (i + 4 >= tok.n) return -1;
                for (int k = 0; k < 4; k++) {
                    char h = tok.p[++i];
                    cp = cp * 16 + (unsigned long)((h >= '0' && h <= '9') ? h - '0' : (h | 32) - 'a' + 10);
                }
                if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < tok.n && tok.p[i + 1] == '\\' && tok.p[i + 2] == 'u') {
                    unsigned long lo = 0;
                    for (int k = 0; k < 4; k++) {
                        char h = tok.p[i + 3 + k];
                        lo = lo * 16 + (unsigned long)((h >= '0' && h <= '9') ? h - '0' : (h | 32) - 'a' + 10);
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                {
                    char u[4];
                    size_t un;
                    if (cp < 0x80) { u[0] = (char)cp; un = 1; }
                    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); un = 2; }
                    else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); un = 3; }
                    else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); un = 4; }
                    if (o + un >= cap) return -1;
                    memcpy(out + o, u, un);
                    o += un;
                }
                continue;
            default: c = e; break; /* \" \\ \/ */
            }
        }
        if (o + 1 >= cap) return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

/* Finds member `key` of object `obj`. Returns 1 and the value token, or 0. */
static inline int pj_get(pj_span obj, const char *key, pj_span *value) {
    const char *cursor = NULL;
    pj_span k, v;
    size_t kn = strlen(key);
    while (pj_object_next(obj, &cursor, &k, &v)) {
        if (k.n == kn + 2 && memcmp(k.p + 1, key, kn) == 0) {
            *value = v;
            return 1;
        }
    }
    return 0;
}

static inline int pj_is_string(pj_span tok) { return tok.n >= 2 && tok.p[0] == '"'; }
static inline int pj_is_object(pj_span tok) { return tok.n >= 2 && tok.p[0] == '{'; }

/* A growable output buffer. ok becomes 0 after an allocation failure (later writes are ignored). */
typedef struct pj_buf {
    char *p;
    size_t n, cap;
    int ok;
} pj_buf;

static inline void pj_put(pj_buf *b, const char *s, size_t n) {
    if (!b->ok) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *q = (char *)realloc(b->p, cap);
        if (!q) { b->ok = 0; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static inline void pj_puts(pj_buf *b, const char *s) { pj_put(b, s, strlen(s)); }
static inline void pj_put_span(pj_buf *b, pj_span s) { pj_put(b, s.p, s.n); }

/* Writes s (n bytes of UTF-8) as a quoted JSON string. */
static inline void pj_put_string(pj_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    pj_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') pj_put(b, "\\\"", 2);
        else if (c == '\\') pj_put(b, "\\\\", 2);
        else if (c == '\n') pj_put(b, "\\n", 2);
        else if (c == '\r') pj_put(b, "\\r", 2);
        else if (c == '\t') pj_put(b, "\\t", 2);
        else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            pj_put(b, e, 6);
        } else pj_put(b, (const char *)&s[i], 1);
    }
    pj_put(b, "\"", 1);
}

#endif /* PJSON_H */
