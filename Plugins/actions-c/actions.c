/*
 * Example native actions for Parley: plain C functions with natural signatures, bound by actions.yml.
 * Nothing here includes or knows Parley's plugin ABI; libffi calls these directly.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* Tip for a bill: amount * percent / 100, rounded to cents. */
EXPORT double parley_tip(double amount, int32_t percent) {
    double tip = amount * (double)percent / 100.0;
    return (double)(long long)(tip * 100.0 + (tip >= 0 ? 0.5 : -0.5)) / 100.0;
}

/* Meters per unit for km, m, mi and ft; 0 for an unknown unit. */
static int unit_factor(const char *unit, double *meters) {
    if (strcmp(unit, "km") == 0) { *meters = 1000.0; return 1; }
    if (strcmp(unit, "m") == 0) { *meters = 1.0; return 1; }
    if (strcmp(unit, "mi") == 0) { *meters = 1609.344; return 1; }
    if (strcmp(unit, "ft") == 0) { *meters = 0.3048; return 1; }
    return 0;
}

/* Returns a malloc'ed sentence such as "10 km = 6.21 mi", or NULL for an unknown unit.
 * The host frees it with parley_actions_free (declared as `free:` in the manifest). */
EXPORT char *parley_convert(double value, const char *from, const char *to) {
    double a, b;
    if (!unit_factor(from, &a) || !unit_factor(to, &b)) return NULL;
    double result = value * a / b;
    size_t n = (size_t)snprintf(NULL, 0, "%g %s = %.2f %s", value, from, result, to) + 1;
    char *text = malloc(n);
    if (text) snprintf(text, n, "%g %s = %.2f %s", value, from, result, to);
    return text;
}

EXPORT void parley_actions_free(void *p) { free(p); }

/* Greets through the host-provided callback, twice: `say` reaches the conversation that called. */
EXPORT void parley_greet(const char *name, void (*say)(const char *text)) {
    char line[256];
    snprintf(line, sizeof line, "Hello, %s!", name);
    say(line);
    say("Ask me for a tip or a unit conversion.");
}

/* Whether a year is a leap year (bool in, bool out examples are simple). */
EXPORT bool parley_is_leap_year(int64_t year) {
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}
