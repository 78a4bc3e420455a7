#ifndef PARLEY_CZLIB_SHIM_H
#define PARLEY_CZLIB_SHIM_H
#include <zlib.h>
/* deflateInit2 / inflateInit2 are function-like macros (they pass the zlib version and sizeof(z_stream)),
   which Swift cannot import; these wrappers call them for raw deflate (negative window bits, RFC 7692). */
static inline int czlib_deflate_init_raw(z_streamp stream, int level, int windowBits, int memLevel) {
    return deflateInit2(stream, level, Z_DEFLATED, -windowBits, memLevel, Z_DEFAULT_STRATEGY);
}
static inline int czlib_inflate_init_raw(z_streamp stream, int windowBits) {
    return inflateInit2(stream, -windowBits);
}
#endif
