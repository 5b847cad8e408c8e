// loadgen: the harness's load drivers, in C so that the driver is not the
// bottleneck on a 2-core machine. Every mode is bounded in count and time,
// talks only to 127.0.0.1 or a Unix socket, and prints one JSON object.
//
// Every call carries a unique messageId (PREFIX-N): the relay dedupes on it.
// The payload is bench/payload.json with @ID@ replaced.
//
//   loadgen line   --unix PATH | --tcp PORT  --n N [--window W] [--noreply] [--seconds S]
//       one connection, one JSON call per line, pipelined with at most W
//       calls unanswered; counts reply lines and "ok":true replies.
//       --noreply: just write the lines (syslog-ng's TCP source).
//   loadgen batch  --tcp PORT --n N [--size 100] [--conns 4] [--seconds S]
//       POST /v1/batch {"batch":[SIZE calls]} on CONNS keep-alive connections.
//   loadgen rate   --tcp PORT --rate R --seconds S [--conns 8]
//       open loop POST /v1/identify at R calls/s; latency is measured from the
//       scheduled send time (no coordinated omission), as wrk2 does.
//   loadgen get    --tcp PORT --path P --seconds S [--n N]
//       closed loop GET P on one keep-alive connection (scrapers).
// Common: --payload FILE (default bench/payload.json), --prefix P,
//   --uuid (random-looking UUID message ids instead of PREFIX-N).
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

static const char *opt_unix = NULL, *opt_path = "/metrics", *opt_prefix = "lg", *opt_payload = "bench/payload.json";
static int opt_port = 0, opt_window = 1000, opt_noreply = 0, opt_size = 100, opt_conns = 4, opt_uuid = 0;
static long opt_n = 100000;
static double opt_seconds = 60, opt_rate = 1000;
static char *tpl_a, *tpl_b, *tpl_c; // payload = a ID b ID c
static size_t la, lb, lc;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
static void die(const char *m) {
    fprintf(stderr, "loadgen: %s: %s\n", m, strerror(errno));
    printf("{\"error\":\"%s\"}\n", m);
    exit(2);
}

static void load_payload(void) {
    FILE *f = fopen(opt_payload, "rb");
    if (!f) die("payload file");
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    char *p1 = strstr(buf, "@ID@");
    if (!p1) die("payload has no @ID@");
    char *p2 = strstr(p1 + 4, "@ID@");
    if (!p2) die("payload needs two @ID@");
    *p1 = 0; *p2 = 0;
    tpl_a = buf; la = strlen(tpl_a);
    tpl_b = p1 + 4; lb = strlen(tpl_b);
    tpl_c = p2 + 4; lc = strlen(tpl_c);
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Writes one call with id PREFIX-N into out (--uuid: a version-4-shaped
// UUID unique to PREFIX and N, as an SDK sends); returns its length.
static size_t make_call(char *out, long n) {
    char id[96];
    int li;
    if (opt_uuid) {
        uint64_t salt = 1469598103934665603ull;
        for (const char *c = opt_prefix; *c; c++) salt = (salt ^ (unsigned char)*c) * 1099511628211ull;
        // 122 random-looking bits of a bijection of N: unique in practice (not by construction).
        uint64_t hi = splitmix64((uint64_t)n ^ salt), lo = splitmix64(hi);
        li = snprintf(id, sizeof id, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(hi >> 32), (unsigned)(hi >> 16) & 0xffff,
                      (unsigned)hi & 0xfff, (unsigned)(0x8000 | ((lo >> 48) & 0x3fff)), (unsigned long long)(lo & 0xffffffffffffull));
    } else {
        li = snprintf(id, sizeof id, "%s-%ld", opt_prefix, n);
    }
    char *p = out;
    memcpy(p, tpl_a, la); p += la;
    memcpy(p, id, li); p += li;
    memcpy(p, tpl_b, lb); p += lb;
    memcpy(p, id, li); p += li;
    memcpy(p, tpl_c, lc); p += lc;
    return p - out;
}

static int connect_to(void) {
    int fd;
    if (opt_unix) {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, opt_unix, sizeof a.sun_path - 1);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect unix");
    } else {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(opt_port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect tcp");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static int write_all(int fd, const char *b, size_t n) {
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        b += w; n -= w;
    }
    return 0;
}

// ---- HTTP client (keep-alive, Content-Length responses) ----
typedef struct { int fd; char buf[1 << 16]; size_t len; } conn_t;

// Reads one response; returns status or -1. Body (truncated) into body if given.
static int read_response(conn_t *c, char *body, size_t bodycap) {
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end) {
            size_t hlen = end - c->buf + 4;
            int status = 0;
            sscanf(c->buf, "HTTP/1.%*d %d", &status);
            long clen = 0;
            char *cl = memmem(c->buf, hlen, "ontent-Length:", 14);
            if (!cl) cl = memmem(c->buf, hlen, "ontent-length:", 14);
            if (cl) clen = strtol(cl + 14, NULL, 10);
            while (c->len < hlen + clen) {
                if (c->len == sizeof c->buf) return -1;
                ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
                if (r <= 0) return -1;
                c->len += r;
            }
            if (body) {
                size_t k = clen < (long)bodycap - 1 ? (size_t)clen : bodycap - 1;
                memcpy(body, c->buf + hlen, k);
                body[k] = 0;
            }
            memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
            c->len -= hlen + clen;
            return status;
        }
        if (c->len == sizeof c->buf) return -1;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (r <= 0) return -1;
        c->len += r;
    }
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static void print_pcts(double *lat, long n) {
    qsort(lat, n, sizeof *lat, cmp_d);
#define P(q) (n ? lat[(long)((q) * (n - 1))] * 1000 : 0)
    printf("\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f",
           P(0.5), P(0.9), P(0.99), P(0.999), n ? lat[n - 1] * 1000 : 0);
}

// ---- line mode ----
static int mode_line(void) {
    int fd = connect_to();
    size_t cap = 1 << 20;
    char *out = malloc(cap + 20000);
    char rbuf[1 << 16];
    char carry[8192];
    size_t carry_len = 0;
    long sent = 0, replies = 0, oks = 0;
    size_t olen = 0, ooff = 0;
    double t0 = now(), w0 = wall(), deadline = t0 + opt_seconds;
    int timed_out = 0;
    struct pollfd pfd = {.fd = fd};
    while (opt_noreply ? (sent < opt_n || ooff < olen) : (replies < opt_n)) {
        if (now() > deadline) { timed_out = 1; break; }
        // Refill the output buffer while the window allows.
        if (ooff == olen) {
            olen = ooff = 0;
            while (sent < opt_n && olen < cap && (opt_noreply || sent - replies < opt_window)) {
                olen += make_call(out + olen, sent);
                out[olen++] = '\n';
                sent++;
            }
        }
        pfd.events = (ooff < olen ? POLLOUT : 0) | (opt_noreply ? 0 : POLLIN);
        if (pfd.events == 0) break;
        int pr = poll(&pfd, 1, 100);
        if (pr < 0) { if (errno == EINTR) continue; die("poll"); }
        if (pfd.revents & (POLLERR | POLLHUP) && !(pfd.revents & POLLIN)) break;
        if (pfd.revents & POLLOUT) {
            ssize_t w = send(fd, out + ooff, olen - ooff, MSG_DONTWAIT);
            if (w > 0) ooff += w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) die("write");
        }
        if (pfd.revents & POLLIN) {
            ssize_t r = recv(fd, rbuf, sizeof rbuf, MSG_DONTWAIT);
            if (r == 0) break;
            if (r < 0) { if (errno == EAGAIN || errno == EINTR) continue; die("read"); }
            char *p = rbuf, *e = rbuf + r;
            while (p < e) {
                char *nl = memchr(p, '\n', e - p);
                size_t k = (nl ? nl : e) - p;
                if (carry_len + k < sizeof carry) { memcpy(carry + carry_len, p, k); carry_len += k; }
                if (!nl) break;
                carry[carry_len] = 0;
                replies++;
                if (strstr(carry, "\"ok\":true")) oks++;
                carry_len = 0;
                p = nl + 1;
            }
        }
    }
    double el = now() - t0;
    if (opt_noreply) shutdown(fd, SHUT_WR);
    close(fd);
    printf("{\"mode\":\"line\",\"sent\":%ld,\"replies\":%ld,\"ok\":%ld,\"elapsed_s\":%.4f,\"rate\":%.1f,\"start_epoch\":%.6f,\"timed_out\":%s}\n",
           sent, replies, oks, el, (opt_noreply ? sent : oks) / el, w0, timed_out ? "true" : "false");
    return 0;
}

// ---- batch mode ----
static atomic_long next_batch, acked_calls, bad_batches;
static double batch_deadline;
static void *batch_worker(void *arg) {
    (void)arg;
    conn_t *c = calloc(1, sizeof *c);
    c->fd = connect_to();
    size_t cap = (size_t)opt_size * 2000 + 4096;
    char *body = malloc(cap), *req = malloc(cap + 512);
    char rb[512];
    long nb = (opt_n + opt_size - 1) / opt_size;
    for (;;) {
        long b = atomic_fetch_add(&next_batch, 1);
        if (b >= nb || now() > batch_deadline) break;
        size_t bl = 0;
        memcpy(body, "{\"batch\":[", 10); bl = 10;
        long first = b * opt_size, k = 0;
        for (long i = first; i < first + opt_size && i < opt_n; i++, k++) {
            if (k) body[bl++] = ',';
            bl += make_call(body + bl, i);
        }
        body[bl++] = ']'; body[bl++] = '}';
        int hl = snprintf(req, 512, "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", bl);
        memcpy(req + hl, body, bl);
        if (write_all(c->fd, req, hl + bl) < 0) die("write batch");
        int st = read_response(c, rb, sizeof rb);
        if (st == 200 && !strstr(rb, "\"errors\"")) atomic_fetch_add(&acked_calls, k);
        else { atomic_fetch_add(&bad_batches, 1); if (atomic_load(&bad_batches) < 3) fprintf(stderr, "batch: %d %s\n", st, rb); }
        if (st < 0) break;
    }
    close(c->fd);
    return NULL;
}
static int mode_batch(void) {
    pthread_t th[64];
    int n = opt_conns > 64 ? 64 : opt_conns;
    double t0 = now(), w0 = wall();
    batch_deadline = t0 + opt_seconds;
    for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, batch_worker, NULL);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double el = now() - t0;
    long a = atomic_load(&acked_calls);
    printf("{\"mode\":\"batch\",\"acked\":%ld,\"bad_batches\":%ld,\"elapsed_s\":%.4f,\"rate\":%.1f,\"start_epoch\":%.6f,\"size\":%d,\"conns\":%d}\n",
           a, atomic_load(&bad_batches), el, a / el, w0, opt_size, n);
    return 0;
}

// ---- rate mode (open loop) ----
typedef struct { int idx; long sent, ok, bad; double *lat; long nlat, cap; } rate_t;
static double rate_t0;
static atomic_long rate_seq;
static void *rate_worker(void *arg) {
    rate_t *r = arg;
    conn_t *c = calloc(1, sizeof *c);
    c->fd = connect_to();
    double interval = opt_conns / opt_rate;
    double start = rate_t0 + r->idx * (interval / opt_conns);
    char *req = malloc(32768);
    char rb[512];
    for (long k = 0;; k++) {
        double sched = start + k * interval;
        if (sched - rate_t0 >= opt_seconds) break;
        double t = now();
        if (sched > t) { double d = sched - t; struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)}; nanosleep(&ts, NULL); }
        char body[16384];
        size_t bl = make_call(body, atomic_fetch_add(&rate_seq, 1));
        int hl = snprintf(req, 512, "POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", bl);
        memcpy(req + hl, body, bl);
        if (write_all(c->fd, req, hl + bl) < 0) die("write identify");
        int st = read_response(c, rb, sizeof rb);
        double lat = now() - sched;
        r->sent++;
        if (st == 200) r->ok++; else r->bad++;
        if (r->nlat == r->cap) { r->cap = r->cap ? r->cap * 2 : 4096; r->lat = realloc(r->lat, r->cap * sizeof(double)); }
        r->lat[r->nlat++] = lat;
        if (st < 0) break;
    }
    close(c->fd);
    return NULL;
}
static int mode_rate(void) {
    int n = opt_conns > 64 ? 64 : opt_conns;
    pthread_t th[64];
    rate_t rs[64];
    memset(rs, 0, sizeof rs);
    rate_t0 = now() + 0.05;
    for (int i = 0; i < n; i++) { rs[i].idx = i; pthread_create(&th[i], NULL, rate_worker, &rs[i]); }
    long sent = 0, ok = 0, bad = 0, nl = 0;
    for (int i = 0; i < n; i++) { pthread_join(th[i], NULL); sent += rs[i].sent; ok += rs[i].ok; bad += rs[i].bad; nl += rs[i].nlat; }
    double el = now() - rate_t0;
    double *all = malloc((nl + 1) * sizeof(double));
    long j = 0;
    for (int i = 0; i < n; i++) { memcpy(all + j, rs[i].lat, rs[i].nlat * sizeof(double)); j += rs[i].nlat; }
    printf("{\"mode\":\"rate\",\"target_rate\":%.1f,\"sent\":%ld,\"ok\":%ld,\"bad\":%ld,\"elapsed_s\":%.3f,\"achieved_rate\":%.1f,",
           opt_rate, sent, ok, bad, el, ok / el);
    print_pcts(all, nl);
    printf("}\n");
    return 0;
}

// ---- get mode (closed loop scraper) ----
static int mode_get(void) {
    conn_t *c = calloc(1, sizeof *c);
    c->fd = connect_to();
    char req[512];
    int hl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", opt_path);
    long cap = 1 << 20, n = 0, bad = 0;
    double *lat = malloc(cap * sizeof(double));
    double t0 = now();
    while (n < opt_n && n < cap && now() - t0 < opt_seconds) {
        double s = now();
        if (write_all(c->fd, req, hl) < 0) die("write get");
        int st = read_response(c, NULL, 0);
        lat[n++] = now() - s;
        if (st != 200) { bad++; if (st < 0) break; }
    }
    double el = now() - t0;
    printf("{\"mode\":\"get\",\"path\":\"%s\",\"n\":%ld,\"bad\":%ld,\"elapsed_s\":%.3f,\"rate\":%.1f,", opt_path, n, bad, el, n / el);
    print_pcts(lat, n);
    printf("}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: loadgen line|batch|rate|get [options]\n"); return 2; }
    const char *mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--noreply")) { opt_noreply = 1; continue; }
        if (!strcmp(a, "--uuid")) { opt_uuid = 1; continue; }
        i++;
        if (!strcmp(a, "--unix")) opt_unix = v;
        else if (!strcmp(a, "--tcp")) opt_port = atoi(v);
        else if (!strcmp(a, "--n")) opt_n = atol(v);
        else if (!strcmp(a, "--window")) opt_window = atoi(v);
        else if (!strcmp(a, "--seconds")) opt_seconds = atof(v);
        else if (!strcmp(a, "--size")) opt_size = atoi(v);
        else if (!strcmp(a, "--conns")) opt_conns = atoi(v);
        else if (!strcmp(a, "--rate")) opt_rate = atof(v);
        else if (!strcmp(a, "--path")) opt_path = v;
        else if (!strcmp(a, "--prefix")) opt_prefix = v;
        else if (!strcmp(a, "--payload")) opt_payload = v;
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    if (opt_seconds > 900) opt_seconds = 900; // every loop is bounded in time
    load_payload();
    if (!strcmp(mode, "line")) return mode_line();
    if (!strcmp(mode, "batch")) return mode_batch();
    if (!strcmp(mode, "rate")) return mode_rate();
    if (!strcmp(mode, "get")) return mode_get();
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
