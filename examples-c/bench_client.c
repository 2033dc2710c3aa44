/*
 * A load client in mode B (poll(2)), for BENCHMARKS.md.
 *
 *   bench_client URI WINDOW SECONDS [MAX_REQUESTS [SERVER_PID]]
 *
 * Keeps WINDOW Confirmable GETs of URI in flight from one context (NSTART is set to WINDOW,
 * so the library lets them all out at once), sending the next request from the response
 * callback of the previous one. A message ID is 16 bits and is not used again with the same
 * server within EXCHANGE_LIFETIME (247 s; the library waits instead), so a context sends at
 * most 65536 requests: then it sends nothing more until they are answered, and is replaced by
 * a new context (a new socket, on a new source port). Stops sending after MAX_REQUESTS (default 1000000) or
 * SECONDS, whichever comes first, waits up to 1 s for what is still in flight, and prints
 * one line: answered, failed and unanswered counts, the elapsed time, requests per second,
 * the p50/p99 latency, the server's CPU time per answered request (user + system of process
 * SERVER_PID from /proc/PID/stat before and after, as benches/loadgen.rs; "-" without
 * SERVER_PID) and the client's own CPU time (user + system) per answered request.
 * Exit status 0 if at least one request was answered.
 */
#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "coapio.h"

struct bench;

/* One place in the window: the request now in flight there. */
struct slot {
    struct bench *b;
    int64_t start_ns;
    bool busy;
};

/* Requests per context: message IDs are 16 bits (see above). */
#ifndef REQUESTS_PER_CONTEXT
#define REQUESTS_PER_CONTEXT 65536L
#endif

struct bench {
    coapio_context *ctx;
    long sent_on_ctx; /* requests handed to coapio_context_send on ctx */
    bool draining;    /* ctx has used its message IDs: replaced once nothing is in flight */
    const char *uri;
    struct slot *slots;
    uint32_t *latency_us; /* one per answered request */
    long max, sent, answered, failed, errors_sending;
    long in_flight;
    bool sending; /* false once the count or the time is used up */
    coapio_result first_failure;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_response(void *userdata, coapio_result result, const coapio_response *resp);

/* Sends the next request from `slot`; false if the library refused it, or if the context
 * has used its message IDs (then b->draining is set). */
static bool send_one(struct slot *slot) {
    struct bench *b = slot->b;
    if (b->sent_on_ctx >= REQUESTS_PER_CONTEXT) {
        b->draining = true;
        return false;
    }
    coapio_request *req = NULL;
    coapio_result res = coapio_request_new(COAPIO_METHOD_GET, b->uri, &req);
    if (res == COAPIO_RESULT_OK) {
        slot->start_ns = now_ns();
        b->sent_on_ctx++; /* also if refused: the library may have taken an ID */
        res = coapio_context_send(b->ctx, req, on_response, slot, NULL);
    }
    if (res != COAPIO_RESULT_OK) {
        b->errors_sending++;
        if (b->first_failure == COAPIO_RESULT_OK) {
            b->first_failure = res;
        }
        return false;
    }
    slot->busy = true;
    b->sent++;
    b->in_flight++;
    return true;
}

static void on_response(void *userdata, coapio_result result, const coapio_response *resp) {
    struct slot *slot = userdata;
    struct bench *b = slot->b;
    (void)resp;
    slot->busy = false;
    b->in_flight--;
    if (result == COAPIO_RESULT_OK) {
        int64_t us = (now_ns() - slot->start_ns) / 1000;
        b->latency_us[b->answered++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    } else {
        b->failed++;
        if (b->first_failure == COAPIO_RESULT_OK) {
            b->first_failure = result;
        }
    }
    if (b->sending && b->sent < b->max) {
        send_one(slot); /* sending from a callback is allowed; only run/process are not */
    }
}

/* User + system CPU time of process pid in microseconds (/proc/PID/stat), or -1. */
static long long proc_cpu_us(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The fields after the command name, which is in parentheses and may hold spaces. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] == 0) {
        return -1;
    }
    unsigned long long utime = 0, stime = 0;
    /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &utime, &stime) !=
        2) {
        return -1;
    }
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0) {
        hz = 100;
    }
    return (long long)((utime + stime) * 1000000ULL / (unsigned long long)hz);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: bench_client URI WINDOW SECONDS [MAX_REQUESTS [SERVER_PID]]\n");
        return 2;
    }
    long window = strtol(argv[2], NULL, 10);
    double seconds = strtod(argv[3], NULL);
    long max = argc >= 5 ? strtol(argv[4], NULL, 10) : 1000000;
    long server_pid = argc == 6 ? strtol(argv[5], NULL, 10) : 0;
    if (window < 1 || window > 65535 || seconds <= 0 || max < 1 || (argc == 6 && server_pid < 1)) {
        fprintf(stderr, "bench_client: WINDOW is 1 to 65535, SECONDS, MAX_REQUESTS and "
                        "SERVER_PID positive\n");
        return 2;
    }

    struct bench b;
    memset(&b, 0, sizeof b);
    b.uri = argv[1];
    b.max = max;
    b.sending = true;
    b.slots = calloc((size_t)window, sizeof *b.slots);
    b.latency_us = malloc((size_t)max * sizeof *b.latency_us);
    coapio_config *cfg = NULL;
    int status = 1;
    if (b.slots == NULL || b.latency_us == NULL || coapio_config_new(&cfg) != COAPIO_RESULT_OK ||
        coapio_config_set_nstart(cfg, (uint32_t)window) != COAPIO_RESULT_OK ||
        coapio_context_new(cfg, &b.ctx) != COAPIO_RESULT_OK) {
        fprintf(stderr, "bench_client: cannot set up the client\n");
        goto out;
    }

    long long server_before = server_pid > 0 ? proc_cpu_us(server_pid) : -1;
    int64_t start = now_ns();
    int64_t stop_sending = start + (int64_t)(seconds * 1e9);
    int64_t give_up = stop_sending + 1000000000; /* 1 s more for the last answers */
    for (long i = 0; i < window; i++) {
        b.slots[i].b = &b;
    }
    for (long i = 0; i < window && b.sent < b.max; i++) {
        if (!send_one(&b.slots[i])) {
            break;
        }
    }
    struct pollfd pfd = {coapio_context_get_fd(b.ctx), POLLIN, 0};
    while (b.in_flight > 0 || (b.draining && b.sending && b.sent < b.max)) {
        int64_t now = now_ns();
        if (b.sending && now >= stop_sending) {
            b.sending = false;
        }
        if (now >= give_up) {
            break;
        }
        if (b.draining && b.in_flight == 0) {
            if (!b.sending) {
                break;
            }
            /* The new context is made before the old one is freed: another source port. */
            coapio_context *fresh = NULL;
            coapio_result res = coapio_context_new(cfg, &fresh);
            if (res != COAPIO_RESULT_OK) {
                fprintf(stderr, "bench_client: new context: %s\n", coapio_result_str(res));
                goto out;
            }
            coapio_context_free(b.ctx);
            b.ctx = fresh;
            b.sent_on_ctx = 0;
            b.draining = false;
            pfd.fd = coapio_context_get_fd(b.ctx);
            for (long i = 0; i < window && b.sent < b.max; i++) {
                if (!b.slots[i].busy && !send_one(&b.slots[i])) {
                    break;
                }
            }
            continue;
        }
        int64_t limit_ms = ((b.sending ? stop_sending : give_up) - now + 999999) / 1000000;
        int64_t next = coapio_context_next_timeout_ms(b.ctx);
        int timeout = (int)(next >= 0 && next < limit_ms ? next : limit_ms);
        if (poll(&pfd, 1, timeout) < 0) {
            perror("poll");
            goto out;
        }
        coapio_result res = coapio_context_process(b.ctx);
        if (res != COAPIO_RESULT_OK) {
            fprintf(stderr, "bench_client: process: %s\n", coapio_result_str(res));
            goto out;
        }
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    long long server_after = server_pid > 0 ? proc_cpu_us(server_pid) : -1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);

    uint32_t p50 = 0, p99 = 0;
    if (b.answered > 0) {
        qsort(b.latency_us, (size_t)b.answered, sizeof *b.latency_us, cmp_u32);
        p50 = b.latency_us[(b.answered - 1) * 50 / 100];
        p99 = b.latency_us[(b.answered - 1) * 99 / 100];
    }
    char server_cpu[32] = "-";
    if (server_before >= 0 && server_after >= 0 && b.answered > 0) {
        snprintf(server_cpu, sizeof server_cpu, "%.1fus",
                 (double)(server_after - server_before) / (double)b.answered);
    }
    printf("window=%-3ld answered=%ld failed=%ld unanswered=%ld seconds=%.2f req/s=%.0f "
           "p50=%uus p99=%uus server_cpu_per_req=%s client_cpu_per_req=%.1fus\n",
           window, b.answered, b.failed + b.errors_sending, b.in_flight, elapsed,
           (double)b.answered / elapsed, (unsigned)p50, (unsigned)p99, server_cpu,
           b.answered > 0 ? cpu_us / (double)b.answered : 0.0);
    if (b.first_failure != COAPIO_RESULT_OK) {
        fprintf(stderr, "bench_client: first failure: %s\n", coapio_result_str(b.first_failure));
    }
    status = b.answered > 0 ? 0 : 1;
out:
    coapio_context_free(b.ctx); /* requests still in flight are dropped, without callbacks */
    coapio_config_free(cfg);
    free(b.slots);
    free(b.latency_us);
    return status;
}
