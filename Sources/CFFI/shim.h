#ifndef PARLEY_CFFI_SHIM_H
#define PARLEY_CFFI_SHIM_H
#include <ffi.h>
/* Swift 6 refuses direct references to libffi's mutable ffi_type_* globals; these accessors return them. */
static inline ffi_type *cffi_type_void(void) { return &ffi_type_void; }
static inline ffi_type *cffi_type_uint8(void) { return &ffi_type_uint8; }
static inline ffi_type *cffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *cffi_type_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *cffi_type_double(void) { return &ffi_type_double; }
static inline ffi_type *cffi_type_pointer(void) { return &ffi_type_pointer; }
#endif
