/* libffi, from Debian's libffi-dev: closures are our C entry points. */
#include <ffi.h>
