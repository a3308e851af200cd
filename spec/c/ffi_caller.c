/* A generic C caller for callback specs: calls any function pointer whose parameters and result
 * are scalars, with the arguments given, through libffi's ffi_call, on this thread or on a new
 * pthread. Kinds are lj-async's value kinds (Sources/LJAsync/Callback/ValueKind.swift). */
#include <ffi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static ffi_type *kind_type(int k) {
  switch (k) {
  case 0: return &ffi_type_void;
  case 1: return &ffi_type_sint8;
  case 2: case 12: return &ffi_type_uint8;
  case 3: return &ffi_type_sint16;
  case 4: return &ffi_type_uint16;
  case 5: return &ffi_type_sint32;
  case 6: return &ffi_type_uint32;
  case 7: return &ffi_type_sint64;
  case 8: return &ffi_type_uint64;
  case 9: return &ffi_type_float;
  case 10: return &ffi_type_double;
  case 11: return &ffi_type_pointer;
  default: return NULL;
  }
}

struct ffi_job {
  ffi_cif cif;
  void (*fp)(void);
  void **values;
  union { ffi_arg i; int64_t l; float f; double d; void *p; } ret;
};

static void *run_job(void *arg) {
  struct ffi_job *j = arg;
  ffi_call(&j->cif, j->fp, &j->ret, j->values);
  return NULL;
}

/* Calls fp(args...) where parameter i has kind kinds[i] and its value at &args[i] (8 bytes each,
 * the value at offset 0). Stores the result widened: integers, bools and pointers in *iret,
 * float and double in *dret. Returns 0, or -1 when libffi cannot describe the call or the
 * thread cannot start. */
int ljt_ffi_call(void *fp, int ret_kind, int nargs, const uint8_t *kinds, uint64_t *args,
                 int on_thread, int64_t *iret, double *dret) {
  struct ffi_job j;
  memset(&j, 0, sizeof j);
  ffi_type **types = calloc(nargs ? nargs : 1, sizeof *types);
  j.values = calloc(nargs ? nargs : 1, sizeof *j.values);
  int rc = -1;
  if (!types || !j.values) goto out;
  for (int i = 0; i < nargs; i++) {
    if (!(types[i] = kind_type(kinds[i])) || kinds[i] == 0) goto out;
    j.values[i] = &args[i];
  }
  ffi_type *rt = kind_type(ret_kind);
  if (!rt || ffi_prep_cif(&j.cif, FFI_DEFAULT_ABI, nargs, rt, types) != FFI_OK) goto out;
  j.fp = (void (*)(void))fp;
  if (on_thread) {
    pthread_t t;
    if (pthread_create(&t, NULL, run_job, &j)) goto out;
    pthread_join(t, NULL);
  } else {
    run_job(&j);
  }
  *iret = 0; *dret = 0;
  switch (ret_kind) {
  case 1: *iret = (int8_t)j.ret.i; break;
  case 2: case 12: *iret = (uint8_t)j.ret.i; break;
  case 3: *iret = (int16_t)j.ret.i; break;
  case 4: *iret = (uint16_t)j.ret.i; break;
  case 5: *iret = (int32_t)j.ret.i; break;
  case 6: *iret = (uint32_t)j.ret.i; break;
  case 7: case 8: *iret = j.ret.l; break;
  case 9: *dret = j.ret.f; break;
  case 10: *dret = j.ret.d; break;
  case 11: *iret = (int64_t)(intptr_t)j.ret.p; break;
  }
  rc = 0;
out:
  free(types);
  free(j.values);
  return rc;
}
