// CMalloc: glibc's malloc.h for Swift (malloc_trim, mallinfo2), which the
// Glibc module does not include. Declarations only; nothing lives here.
// Imported on Linux with glibc only.
#ifndef PLAINFLOW_CMALLOC_SHIM_H
#define PLAINFLOW_CMALLOC_SHIM_H
#if defined(__GLIBC__) || (defined(__linux__) && !defined(__APPLE__))
#include <malloc.h>
#endif
#endif
