// sqlite_bench: what SQLite itself does on this disk, as the relay's spool
// uses it: WAL, synchronous=FULL, the outbox table's shape and indexes, the
// relay's INSERT OR IGNORE, ROWS rows per transaction. Bounded by count and
// time. Prints one JSON object.
//
//   sqlite_bench DBFILE ROWS_PER_TXN MAX_ROWS MAX_SECONDS [PAYLOAD_FILE [uuid]]
//
// Ids are numbered in order (sq-T-N), each one landing on the last page of
// the unique index; with `uuid` they are random version-4-shaped UUIDs, as
// the SDKs send (loadgen --uuid makes them the same way).
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned long long splitmix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void check(sqlite3 *db, int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite_bench: %s: %s\n", what, sqlite3_errmsg(db));
        printf("{\"error\":\"%s\"}\n", what);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: sqlite_bench DB ROWS_PER_TXN MAX_ROWS MAX_SECONDS [PAYLOAD [uuid]]\n"); return 2; }
    const char *path = argv[1];
    long per = atol(argv[2]), max_rows = atol(argv[3]);
    double max_s = atof(argv[4]);
    const char *pf = argc > 5 ? argv[5] : "bench/payload.json";
    int uuid = argc > 6 && !strcmp(argv[6], "uuid");
    char payload[16384];
    FILE *f = fopen(pf, "rb");
    if (!f) { perror(pf); return 2; }
    size_t pl = fread(payload, 1, sizeof payload - 1, f);
    fclose(f);
    payload[pl] = 0;

    sqlite3 *db;
    check(db, sqlite3_open(path, &db), "open");
    check(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;", 0, 0, 0), "pragmas");
    check(db, sqlite3_exec(db,
        "CREATE TABLE IF NOT EXISTS outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, write_key TEXT NOT NULL DEFAULT '',"
        " priority INTEGER NOT NULL DEFAULT 0, received_at INTEGER NOT NULL, payload BLOB NOT NULL, bytes INTEGER NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0, first_attempt_at INTEGER, last_error TEXT);"
        "CREATE UNIQUE INDEX IF NOT EXISTS outbox_message_id ON outbox(message_id);"
        "CREATE INDEX IF NOT EXISTS outbox_order ON outbox(priority, seq);", 0, 0, 0), "schema");
    sqlite3_stmt *ins;
    check(db, sqlite3_prepare_v2(db,
        "INSERT OR IGNORE INTO outbox (message_id, write_key, priority, received_at, payload, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        -1, &ins, 0), "prepare");
    long rows = 0, txns = 0;
    double t0 = now();
    char id[64];
    // Payload with its id in place, as the relay stores canonical JSON per message.
    char *pp = malloc(pl + 128);
    while (rows < max_rows && now() - t0 < max_s) {
        check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), "begin");
        for (long i = 0; i < per && rows < max_rows; i++, rows++) {
            int il;
            if (uuid) {  // as loadgen --uuid: 122 random-looking bits of a bijection of the row number
                unsigned long long hi = splitmix64((unsigned long long)rows ^ (unsigned long long)(t0 * 1e6)), lo = splitmix64(hi);
                il = snprintf(id, sizeof id, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(hi >> 32), (unsigned)(hi >> 16) & 0xffff,
                              (unsigned)hi & 0xfff, (unsigned)(0x8000 | ((lo >> 48) & 0x3fff)), lo & 0xffffffffffffull);
            } else {
                il = snprintf(id, sizeof id, "sq-%ld-%ld", (long)t0, rows);
            }
            int n = snprintf(pp, pl + 128, "{\"message_id\":\"%s\",%s", id, payload + 1);
            sqlite3_bind_text(ins, 1, id, il, SQLITE_TRANSIENT);
            sqlite3_bind_text(ins, 2, "", 0, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 3, 0);
            sqlite3_bind_int64(ins, 4, (long long)(t0 * 1000) + rows);
            sqlite3_bind_blob(ins, 5, pp, n, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 6, n);
            check(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
        txns++;
    }
    double el = now() - t0;
    printf("{\"ids\":\"%s\",\"rows_per_txn\":%ld,\"rows\":%ld,\"txns\":%ld,\"elapsed_s\":%.4f,\"rows_per_s\":%.1f,\"txns_per_s\":%.1f,\"sqlite_version\":\"%s\"}\n",
           uuid ? "uuid" : "ordered", per, rows, txns, el, rows / el, txns / el, sqlite3_libversion());
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return 0;
}
