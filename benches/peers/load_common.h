/*
 * What the benchmark peers' load clients share (bare_udp.c, libcoap_client_load.c): number
 * flags, the clock, CPU time (their own and the server's, from /proc/PID/stat) and the one
 * result line that every load generator of this repository prints, so that benches/perf.sh
 * reads them all alike. Included, not linked: every function is static.
 */
#ifndef COAPIO_BENCH_LOAD_COMMON_H
#define COAPIO_BENCH_LOAD_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long long parse_num(const char *flag, const char *v, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end) {
        fprintf(stderr, "%s %s: not a number\n", flag, v);
        exit(2);
    }
    return n < lo ? lo : n > hi ? hi : n;
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* User + system CPU time of process pid in microseconds (/proc/PID/stat), or -1. */
static long long proc_cpu_us(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the command name, which is in parentheses and may hold spaces. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p += 2;
    unsigned long long utime = 0, stime = 0;
    /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &utime, &stime) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0) hz = 100;
    return (long long)((utime + stime) * 1000000ULL / (unsigned long long)hz);
}

static long long self_cpu_us(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (long long)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000LL + r.ru_utime.tv_usec +
           r.ru_stime.tv_usec;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* "1.2.3.4:5683" or "[::1]:5683" */
static socklen_t parse_addr(const char *s, struct sockaddr_storage *out) {
    char host[128];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) goto bad;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) goto bad;
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return sizeof *v6;
    }
bad:
    fprintf(stderr, "bad address %s (want ADDR:PORT)\n", s);
    exit(2);
}

/* The load clients' flags: --target --path --window --requests --seconds --server-pid
 * --sockets, from argv[first] on, each with a value. */
struct load_args {
    const char *target, *path;
    long long window, requests, seconds, server_pid, sockets;
};

static struct load_args parse_load_args(int argc, char **argv, int first, long long max_sockets,
                                        void (*usage)(void)) {
    struct load_args a = {NULL, "/hello", 1, 100000, 10, -1, 1};
    for (int i = first; i < argc; i += 2) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--target")) a.target = v;
        else if (!strcmp(k, "--path")) a.path = v;
        else if (!strcmp(k, "--window")) a.window = parse_num(k, v, 1, 4096);
        else if (!strcmp(k, "--requests")) a.requests = parse_num(k, v, 1, 10000000);
        else if (!strcmp(k, "--seconds")) a.seconds = parse_num(k, v, 1, 600);
        else if (!strcmp(k, "--server-pid")) a.server_pid = parse_num(k, v, 1, 1LL << 30);
        else if (!strcmp(k, "--sockets")) a.sockets = parse_num(k, v, 1, max_sockets);
        else usage();
    }
    if (!a.target) usage();
    if (a.sockets > a.window) a.sockets = a.window; /* every socket has at least one slot */
    return a;
}

/* Prints the result line: window, answered, seconds, requests/s, p50/p99 latency (from lat,
 * the first `answered` latencies in microseconds, sorted here) and the server's and the
 * client's CPU per answered request (the server's as "-" when either reading is -1). */
static void print_result(int window, long long answered, int64_t elapsed_ns, uint32_t *lat,
                         long long srv_before, long long srv_after, long long cli_before,
                         long long cli_after) {
    double secs = (double)elapsed_ns / 1e9;
    qsort(lat, (size_t)answered, sizeof *lat, cmp_u32);
    uint32_t p50 = 0, p99 = 0;
    if (answered > 0) {
        size_t i50 = (size_t)((double)answered * 0.50), i99 = (size_t)((double)answered * 0.99);
        if (i50 >= (size_t)answered) i50 = (size_t)answered - 1;
        if (i99 >= (size_t)answered) i99 = (size_t)answered - 1;
        p50 = lat[i50];
        p99 = lat[i99];
    }
    double per = answered > 0 ? (double)answered : 1.0;
    char srv[32];
    if (srv_before >= 0 && srv_after >= 0)
        snprintf(srv, sizeof srv, "%.1fus", (double)(srv_after - srv_before) / per);
    else
        snprintf(srv, sizeof srv, "-");
    printf("window=%d answered=%lld seconds=%.2f req/s=%.0f p50=%uus p99=%uus "
           "server_cpu_per_req=%s client_cpu_per_req=%.1fus\n",
           window, answered, secs, (double)answered / secs, p50, p99, srv,
           (double)(cli_after - cli_before) / per);
    fflush(stdout);
}

#endif
