// CSQLite: the SQLite C API for Swift.
// Why a shim: SQLITE_TRANSIENT is a macro casting -1 to a function pointer,
// which Swift cannot import. Nothing else lives here.
#ifndef PLAINFLOW_CSQLITE_SHIM_H
#define PLAINFLOW_CSQLITE_SHIM_H
#include <sqlite3.h>

/// SQLite copies the bound bytes before the bind call returns.
static inline sqlite3_destructor_type pf_sqlite_transient(void) { return SQLITE_TRANSIENT; }

#endif
