// CMalloc: glibc's malloc.h for Swift (malloc_trim, mallinfo2), which the
// Glibc module does not include. Declarations only; nothing lives here.
#ifndef PLAINFLOW_CMALLOC_SHIM_H
#define PLAINFLOW_CMALLOC_SHIM_H
#include <malloc.h>
#endif
