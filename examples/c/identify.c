/*
 * One identify to plainflow-relay over its Unix socket and over TCP: HTTP/1.1
 * written by hand on plain sockets, no library. A 503 (the relay cannot store
 * the call now) is retried after the Retry-After it gave, with the same
 * message_id: the relay stores it once.
 *
 *   cc -O2 -Wall -o identify identify.c
 *   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
 *   PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 ./identify [USER_ID]
 *
 * (USER_ID is put in the JSON as is: a real program escapes it.)
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ATTEMPTS 5

/* Connects to a Unix socket path, or to "host:port" over TCP. -1 on failure. */
static int connect_unix(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

static int connect_tcp(const char *host, const char *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = -1;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) { close(fd); fd = -1; }
    }
    freeaddrinfo(res);
    return fd;
}

/* Sends one request on fd and reads the whole answer (the relay closes after
 * it: Connection: close). Returns the status; *retry_after and *ok from it. */
static int post(int fd, const char *body, int *retry_after, int *ok) {
    char request[4096], answer[16384];
    int n = snprintf(request, sizeof request,
                     "POST /v1/identify HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(body), body);
    for (int sent = 0; sent < n;) {
        ssize_t w = write(fd, request + sent, n - sent);
        if (w <= 0) return -1;
        sent += w;
    }
    size_t got = 0;
    ssize_t r;
    while (got < sizeof answer - 1 && (r = read(fd, answer + got, sizeof answer - 1 - got)) > 0) got += r;
    answer[got] = '\0';
    int status = 0;
    if (sscanf(answer, "HTTP/1.%*d %d", &status) != 1) return -1;
    *retry_after = 5;
    for (char *h = strstr(answer, "\r\n"); h && h[2] != '\r'; h = strstr(h + 2, "\r\n"))
        if (strncasecmp(h + 2, "retry-after:", 12) == 0) *retry_after = atoi(h + 14);
    char *json = strstr(answer, "\r\n\r\n");
    *ok = json && strstr(json, "\"ok\":true") != NULL;
    return status;
}

/* via: "unix" or "tcp"; target: the socket path, or host:port. 0 once stored. */
static int identify(const char *via, const char *target, const char *user_id) {
    char id[37] = "", body[1024];
    FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");
    if (!f || !fgets(id, sizeof id, f)) { fprintf(stderr, "identify failed: no uuid\n"); return 1; }
    fclose(f);
    snprintf(body, sizeof body,
             "{\"type\":\"identify\",\"user_id\":\"%s\",\"message_id\":\"%s\",\"traits\":{\"firstName\":\"Ada\","
             "\"lastName\":\"Lovelace\",\"email\":\"ada@example.com\",\"plan\":\"premium\",\"logins\":5}}", user_id, id);
    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
        int fd;
        if (strcmp(via, "unix") == 0) {
            fd = connect_unix(target);
        } else {
            char host[256];
            const char *colon = strrchr(target, ':');
            if (!colon || (size_t)(colon - target) >= sizeof host) { fprintf(stderr, "identify failed: bad address %s\n", target); return 1; }
            snprintf(host, sizeof host, "%.*s", (int)(colon - target), target);
            fd = connect_tcp(host, colon + 1);
        }
        if (fd < 0) { fprintf(stderr, "identify failed: %s: cannot connect to %s\n", via, target); return 1; }
        int retry_after, ok, status = post(fd, body, &retry_after, &ok);
        close(fd);
        printf("%s %d %s\n", via, status, id);
        fflush(stdout);
        if (status == 200 && ok) return 0;
        if (status != 503) { fprintf(stderr, "identify failed: %s: refused (%d)\n", via, status); return 1; }
        sleep(retry_after); /* not stored: the same message again, later */
    }
    fprintf(stderr, "identify failed: %s: still 503 after %d attempts\n", via, ATTEMPTS);
    return 1;
}

int main(int argc, char **argv) {
    const char *socket_path = getenv("PLAINFLOW_RELAY_SOCKET");
    const char *url = getenv("PLAINFLOW_RELAY_URL");
    const char *user_id = argc > 1 ? argv[1] : "97980cfea0067";
    if (!socket_path) socket_path = "/run/plainflow-relay/relay.sock";
    if (!url) url = "http://127.0.0.1:8787";
    if (strncmp(url, "http://", 7) == 0) url += 7;
    char host_port[300];
    snprintf(host_port, sizeof host_port, "%.*s", (int)strcspn(url, "/"), url);
    if (identify("unix", socket_path, user_id) != 0) return 1;
    return identify("tcp", host_port, user_id);
}
