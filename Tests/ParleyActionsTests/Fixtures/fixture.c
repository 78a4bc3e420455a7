/* Test library for ParleyActionsTests: one function per type combination, built by the tests with cc. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

double fx_add_double_int32(double a, int32_t b) { return a + b; }
int32_t fx_neg_int32(int32_t a) { return -a; }
int64_t fx_mul_int64(int64_t a, int64_t b) { return a * b; }
int32_t fx_min_int32(void) { return INT32_MIN; }
int64_t fx_max_int64(void) { return INT64_MAX; }
bool fx_not(bool b) { return !b; }
bool fx_is_positive(double d) { return d > 0; }
int32_t fx_bool_to_int(bool b) { return b ? 1 : 0; }
int64_t fx_strlen(const char *s) { return (int64_t)strlen(s); }
const char *fx_static_string(void) { return "static ünïcödé"; }
const char *fx_null_string(void) { return NULL; }
const char *fx_invalid_utf8(void) { return "bad \xff\xfe bytes"; }

static int fx_frees = 0;
void fx_free(void *p) { __atomic_add_fetch(&fx_frees, 1, __ATOMIC_SEQ_CST); free(p); }
int32_t fx_free_count(void) { return __atomic_load_n(&fx_frees, __ATOMIC_SEQ_CST); }

char *fx_concat(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%s%s", a, b);
    return out;
}

char *fx_invalid_utf8_malloc(void) { return strdup("x\xc3(y"); }

/* Mixed: every value type at once. */
double fx_mixed(bool flag, int32_t a, int64_t b, double c, const char *s) {
    return (flag ? 1000.0 : 0.0) + a + (double)b + c + (double)strlen(s);
}

int32_t fx_many_int32(int32_t a, int32_t b, int32_t c, int32_t d, int32_t e, int32_t f, int32_t g, int32_t h) {
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}

double fx_many_double(double a, double b, double c, double d, double e, double f, double g, double h, double i, double j) {
    return a + b + c + d + e + f + g + h + i + j;
}

void fx_void_noop(void) {}

/* say: two messages. */
void fx_greet(const char *name, void (*say)(const char *)) {
    char line[128];
    snprintf(line, sizeof line, "hello, %s", name);
    say(line);
    say("bye");
}

/* say then a value; two say callbacks in one signature. */
int32_t fx_two_says(void (*first)(const char *), int32_t n, void (*second)(const char *)) {
    first("one");
    second("two");
    first("three");
    return n * 2;
}

void fx_say_invalid(void (*say)(const char *)) { say("ok"); say("\xff"); }

/* Both callers must be inside the call at the same time: each says hello, waits (bounded) until the other has
 * arrived, then says goodbye. Proves that concurrent closures reach their own conversation. */
static volatile int fx_arrived = 0;
int32_t fx_rendezvous(const char *name, void (*say)(const char *)) {
    char line[128];
    snprintf(line, sizeof line, "hello from %s", name);
    say(line);
    __atomic_add_fetch(&fx_arrived, 1, __ATOMIC_SEQ_CST);
    int waited = 0;
    while (__atomic_load_n(&fx_arrived, __ATOMIC_SEQ_CST) < 2 && waited < 5000) { usleep(1000); waited++; }
    snprintf(line, sizeof line, "goodbye from %s", name);
    say(line);
    return __atomic_load_n(&fx_arrived, __ATOMIC_SEQ_CST) >= 2 ? 1 : 0;
}

/* Sleeps, for deadline tests. */
int32_t fx_sleep_ms(int32_t ms) { usleep((useconds_t)ms * 1000); return ms; }
