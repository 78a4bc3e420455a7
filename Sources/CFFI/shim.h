#ifndef PARLEY_CFFI_SHIM_H
#define PARLEY_CFFI_SHIM_H
#include <stddef.h>
#include <ffi.h>
/* Swift 6 refuses direct references to libffi's mutable ffi_type_* globals; these accessors return them. */
static inline ffi_type *cffi_type_void(void) { return &ffi_type_void; }
static inline ffi_type *cffi_type_uint8(void) { return &ffi_type_uint8; }
static inline ffi_type *cffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *cffi_type_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *cffi_type_double(void) { return &ffi_type_double; }
static inline ffi_type *cffi_type_pointer(void) { return &ffi_type_pointer; }
/* The platform's default calling convention (an enum member whose value differs per target). */
static inline ffi_abi cffi_default_abi(void) { return FFI_DEFAULT_ABI; }
/* sizeof(ffi_closure): the struct holds a trampoline union that Swift does not size reliably. */
static inline size_t cffi_closure_size(void) { return sizeof(ffi_closure); }
#endif
