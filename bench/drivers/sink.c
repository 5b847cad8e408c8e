// sink: a fast local HTTP upstream for the benchmarks. Listens on
// 127.0.0.1:PORT, one thread per connection (the relay and syslog-ng use a
// couple of keep-alive connections), and for every POST counts the messages
// in its {"batch":[...]} body with a small JSON scanner (strings and escapes
// respected; elements of the top-level "batch" array are counted), then
// answers at once.
//
//   sink PORT [STATUS]        STATUS: what POSTs get (default 200)
//   GET /stats                {"messages":N,"requests":N,"bytes":N,"first":EPOCH,"last":EPOCH,"status":S}
//   GET /status?code=N        change what POSTs get (e.g. 503 = upstream down)
//   GET /reset                zero the counters
// A non-2xx answer carries Retry-After: 1, so a relay in backoff comes back
// within a second once the sink answers 200 again.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_long messages, requests, bytes_in;
static _Atomic double first_ts, last_ts;
static atomic_int status_code = 200;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Counts the elements of the array that is the value of top-level key "batch".
static long count_batch(const char *s, size_t n) {
    int depth = 0, in_str = 0, esc = 0, in_batch = 0;
    long count = 0;
    const char *key_start = NULL;
    int last_key_batch = 0, expecting_elem = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') {
                in_str = 0;
                if (depth == 1 && key_start) {
                    size_t kl = s + i - key_start;
                    last_key_batch = (kl == 5 && !memcmp(key_start, "batch", 5));
                    key_start = NULL;
                }
            }
            continue;
        }
        switch (c) {
        case '"':
            if (in_batch && depth == 2 && expecting_elem) { count++; expecting_elem = 0; }
            in_str = 1;
            if (depth == 1) key_start = s + i + 1;
            break;
        case '{': case '[':
            if (in_batch && depth == 2 && expecting_elem) { count++; expecting_elem = 0; }
            if (c == '[' && depth == 1 && last_key_batch) { in_batch = 1; expecting_elem = 1; }
            depth++;
            break;
        case '}': case ']':
            depth--;
            if (depth == 1 && in_batch) in_batch = 0;
            break;
        case ',':
            if (in_batch && depth == 2) expecting_elem = 1;
            if (depth == 1) last_key_batch = 0;
            break;
        case ' ': case '\n': case '\r': case '\t': case ':':
            break;
        default:
            if (in_batch && depth == 2 && expecting_elem) { count++; expecting_elem = 0; }
        }
    }
    return count;
}

static int write_all(int fd, const char *b, size_t n) {
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        b += w; n -= w;
    }
    return 0;
}

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t cap = 4 << 20, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        char *end;
        while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
            if (len == cap) goto out;
            ssize_t r = read(fd, buf + len, cap - len);
            if (r <= 0) goto out;
            len += r;
        }
        size_t hlen = end - buf + 4;
        buf[hlen - 1] = 0;
        long clen = 0;
        int chunked = 0;
        for (char *p = buf; p < buf + hlen; p++) {
            if ((*p == 'C' || *p == 'c') && !strncasecmp(p, "Content-Length:", 15)) clen = strtol(p + 15, NULL, 10);
            if ((*p == 'T' || *p == 't') && !strncasecmp(p, "Transfer-Encoding: chunked", 26)) chunked = 1;
            if ((*p == 'E' || *p == 'e') && !strncasecmp(p, "Expect: 100-continue", 20))
                write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        int is_post = !strncmp(buf, "POST", 4);
        char path[256] = {0};
        sscanf(buf, "%*s %255s", path);
        // Body: Content-Length, or chunked (decoded in place after the headers).
        size_t body_off = hlen, body_len = 0, consumed;
        if (!chunked) {
            if ((size_t)clen > cap - hlen) goto out;
            while (len < hlen + clen) {
                ssize_t r = read(fd, buf + len, cap - len);
                if (r <= 0) goto out;
                len += r;
            }
            body_len = clen;
            consumed = hlen + clen;
        } else {
            size_t rd = hlen, wr = hlen;
            for (;;) {
                char *crlf;
                while (!(crlf = memmem(buf + rd, len - rd, "\r\n", 2))) {
                    if (len == cap) goto out;
                    ssize_t r = read(fd, buf + len, cap - len);
                    if (r <= 0) goto out;
                    len += r;
                }
                long sz = strtol(buf + rd, NULL, 16);
                size_t data = crlf - buf + 2;
                while (len < data + sz + 2) {
                    if (len == cap) goto out;
                    ssize_t r = read(fd, buf + len, cap - len);
                    if (r <= 0) goto out;
                    len += r;
                }
                memmove(buf + wr, buf + data, sz);
                wr += sz;
                rd = data + sz + 2;
                if (sz == 0) break;
            }
            body_len = wr - hlen;
            consumed = rd;
        }
        char resp[512];
        int rl;
        if (is_post) {
            int st = atomic_load(&status_code);
            if (st >= 200 && st < 300) {
                long m = count_batch(buf + body_off, body_len);
                double t = wall();
                pthread_mutex_lock(&mu);
                if (atomic_load(&messages) == 0 && m > 0) first_ts = t;
                atomic_fetch_add(&messages, m);
                if (m > 0) last_ts = t;
                pthread_mutex_unlock(&mu);
                atomic_fetch_add(&requests, 1);
                atomic_fetch_add(&bytes_in, body_len);
                rl = snprintf(resp, sizeof resp, "HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"success\":true}", st);
            } else {
                rl = snprintf(resp, sizeof resp, "HTTP/1.1 %d Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", st);
            }
        } else {
            char js[400];
            if (!strncmp(path, "/status?code=", 13)) atomic_store(&status_code, atoi(path + 13));
            if (!strcmp(path, "/reset")) {
                pthread_mutex_lock(&mu);
                atomic_store(&messages, 0); atomic_store(&requests, 0); atomic_store(&bytes_in, 0);
                first_ts = 0; last_ts = 0;
                pthread_mutex_unlock(&mu);
            }
            int jl = snprintf(js, sizeof js, "{\"messages\":%ld,\"requests\":%ld,\"bytes\":%ld,\"first\":%.6f,\"last\":%.6f,\"status\":%d}",
                              atomic_load(&messages), atomic_load(&requests), atomic_load(&bytes_in), (double)first_ts, (double)last_ts,
                              atomic_load(&status_code));
            rl = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", jl, js);
        }
        if (write_all(fd, resp, rl) < 0) goto out;
        memmove(buf, buf + consumed, len - consumed);
        len -= consumed;
    }
out:
    close(fd);
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: sink PORT [STATUS]\n"); return 2; }
    if (argc > 2) status_code = atoi(argv[2]);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 128) < 0) { perror("sink: bind"); return 1; }
    fprintf(stderr, "sink listening on 127.0.0.1:%s\n", argv[1]);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_create(&t, &at, serve, (void *)(long)fd);
    }
}
