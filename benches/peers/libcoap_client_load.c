/*
 * libcoap_client_load: libcoap 3's own client under load, the client-side peer of
 * benches/loadgen.rs and `bare_udp client` (same flags, same one-line output).
 *
 * Build (Debian/Ubuntu: apt-get install libcoap3-dev; upstream's module is libcoap-3):
 *   cc -O2 -Wall -Wextra -std=c11 -o target/peers/libcoap_client_load \
 *       benches/peers/libcoap_client_load.c $(pkg-config --cflags --libs libcoap-3-notls)
 *
 * Run:
 *   libcoap_client_load --target 127.0.0.1:PORT [--path /hello] [--window W] [--requests N]
 *                       [--seconds S] [--server-pid PID] [--sockets K]
 *
 * Written against libcoap 3's public API only (tested with 4.3.1): one context, K (default 1,
 * at most 64 and at most W) client sessions (UDP, a socket and source port each) to --target,
 * slot s of the window on session s % K, NSTART of each raised to its share of W with
 * coap_session_set_nstart() (the default, RFC 7252's, is 1: libcoap would hold every further
 * Confirmable request in its delay queue). Message IDs (coap_new_message_id, per session) are
 * 16 bits and a server deduplicates by (remote, message ID) for EXCHANGE_LIFETIME (247 s), so a
 * session never reuses one: after 65536 requests it sends nothing more until its requests
 * are answered (or nacked), and is then released and replaced by a new session on a source
 * port not used before in this run (BARE_UDP_VERBOSE=1 reports how many on stderr).
 * W Confirmable GETs for --path (Uri-Path options, a message ID from coap_new_message_id and an
 * 8-byte token: slot number + serial) are kept in flight; the response handler matches the
 * answer's token to its slot, records the latency, and sends the next request from inside the
 * handler. Everything is driven by coap_io_process(ctx, <= 100 ms) until N answers or S
 * seconds. Block-wise handling is left off (the default block mode), libcoap's log is at
 * LOG_WARNING.
 *
 * What libcoap 4.3.1 does per answer (strace -c, window 64): one epoll_wait, one recvfrom
 * (one datagram per coap_io_process round), one sendto, one getrandom (the randomised
 * retransmission timeout of each Confirmable request) and about three timerfd_settime.
 *
 * Reliability is libcoap's own: a request unanswered after ACK_TIMEOUT (2-3 s) is sent again
 * by libcoap, up to MAX_RETRANSMIT (4) times; a late answer counts with its full latency. A
 * request libcoap gives up on (the nack handler), and a request still unanswered after 2 s
 * when the run ends, counts as lost. An ICMP error (nothing listening) ends the run. At most N + lost requests are sent.
 *
 * Output: one line, the format of benches/loadgen.rs's numbers:
 *   window=W answered=A seconds=T req/s=R p50=Xus p99=Yus server_cpu_per_req=Zus client_cpu_per_req=Cus
 * Latency: CLOCK_MONOTONIC from just after coap_send() returned to the start of the response
 * handler, in whole microseconds; the percentiles are of the first N latencies (kept in a
 * preallocated array). server_cpu_per_req: the server's user + system time (/proc/PID/stat)
 * before and after, per answer; "-" without --server-pid. client_cpu_per_req:
 * getrusage(RUSAGE_SELF) user + system (libcoap included), per answer. Lost and stray
 * (unmatched) answers, when there are any, are reported on stderr. Exits 1 when nothing was
 * answered.
 */
#define _POSIX_C_SOURCE 200809L

#include <coap3/coap.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load_common.h"

#define LOST_AFTER_NS 2000000000LL

/* ---------------------------------------------------------------- helpers */

static void usage(void) {
    fprintf(stderr, "usage: libcoap_client_load --target ADDR:PORT [--path /hello] [--window W] "
                    "[--requests N] [--seconds S] [--server-pid PID] [--sockets K]\n");
    exit(2);
}

/* "1.2.3.4:5683" or "[::1]:5683" into a libcoap address */
static void parse_coap_addr(const char *s, coap_address_t *out) {
    struct sockaddr_storage ss;
    socklen_t len = parse_addr(s, &ss);
    coap_address_init(out);
    memcpy(&out->addr, &ss, len);
    out->size = len;
}


/* ---------------------------------------------------------------- the load */

/* A message ID is 16 bits: a session sends at most MID_SPACE requests (every ID once). */
#define MID_SPACE 65536u
#define MAX_SOCKETS 64

struct slot {
    int64_t sent_ns;
    uint32_t serial;
    uint8_t active;
};

/* One client session (one socket, one source port, one message ID space) and the slots of the
 * window that are its share (slot s belongs to session s % K). Once MID_SPACE message IDs
 * are used, the session sends nothing more (draining) until all its requests are answered or
 * given up by libcoap (nack), and is then released and replaced by a new session, on a source
 * port not used before in this run: a server deduplicates by (remote, message ID) for
 * EXCHANGE_LIFETIME (247 s). */
struct sess {
    coap_session_t *session;
    uint32_t mids_used;
    int draining;
    int nslots;
    int *free_slots;
    int nfree;
    long long outstanding;
};

static struct {
    coap_context_t *ctx;
    coap_address_t dst;
    struct sess sess[MAX_SOCKETS];
    int nsess;
    /* Uri-Path segments of --path */
    const char *seg[64];
    size_t seg_len[64];
    int nseg;
    int window;
    struct slot *slots;
    uint32_t next_serial;
    uint32_t *lat;
    long long requests, answered, sent, lost, stray, send_failed, rotations;
    int unreachable; /* an ICMP error (no server): the run ends */
    int64_t deadline;
} L;

static uint8_t port_used[65536]; /* source ports of this client's sessions, for the whole run */

/* A new client session for L.sess[j] on a source port this run has not used yet. */
static void new_session(int j) {
    coap_session_t *rejected[32];
    int nrej = 0;
    struct sess *c = &L.sess[j];
    while (1) {
        c->session = coap_new_client_session(L.ctx, NULL, &L.dst, COAP_PROTO_UDP);
        if (!c->session) {
            fprintf(stderr, "coap_new_client_session failed\n");
            exit(2);
        }
        uint16_t port = coap_address_get_port(coap_session_get_addr_local(c->session));
        if (!port_used[port]) {
            port_used[port] = 1;
            break;
        }
        /* Kept until a fresh port is found, so the kernel does not hand it out again. */
        if (nrej == (int)(sizeof rejected / sizeof *rejected)) {
            fprintf(stderr, "libcoap_client_load: no fresh source port after %d sessions\n", nrej);
            exit(2);
        }
        rejected[nrej++] = c->session;
    }
    for (int i = 0; i < nrej; i++) coap_session_release(rejected[i]);
    coap_session_set_nstart(c->session, (uint16_t)c->nslots);
    if (coap_session_get_nstart(c->session) != (uint16_t)c->nslots) {
        fprintf(stderr, "libcoap kept NSTART at %u (wanted %d)\n",
                coap_session_get_nstart(c->session), c->nslots);
        exit(2);
    }
    c->mids_used = 0;
    c->draining = 0;
}

/* Sends requests for the free slots of session j while the window, the budget, the message
 * IDs and the time allow. */
static void fill(int j) {
    struct sess *c = &L.sess[j];
    while (c->nfree > 0 && !c->draining && L.sent < L.requests + L.lost &&
           L.answered < L.requests) {
        if (L.send_failed > 1000 || L.unreachable) return; /* the main loop ends the run */
        if (c->mids_used == MID_SPACE) {
            c->draining = 1;
            return;
        }
        int s = c->free_slots[c->nfree - 1];
        c->mids_used++; /* also when the request is not sent: never reused */
        coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET,
                                        coap_new_message_id(c->session),
                                        coap_session_max_pdu_size(c->session));
        if (!pdu) {
            L.send_failed++;
            return;
        }
        uint32_t serial = L.next_serial++;
        uint8_t tok[8] = {(uint8_t)(s >> 24),      (uint8_t)(s >> 16),     (uint8_t)(s >> 8),
                          (uint8_t)s,              (uint8_t)(serial >> 24), (uint8_t)(serial >> 16),
                          (uint8_t)(serial >> 8), (uint8_t)serial};
        int ok = coap_add_token(pdu, sizeof tok, tok);
        for (int i = 0; ok && i < L.nseg; i++)
            ok = coap_add_option(pdu, COAP_OPTION_URI_PATH, L.seg_len[i],
                                 (const uint8_t *)L.seg[i]) != 0;
        if (!ok) {
            coap_delete_pdu(pdu);
            L.send_failed++;
            return;
        }
        if (coap_send(c->session, pdu) == COAP_INVALID_MID) { /* coap_send frees the PDU */
            L.send_failed++;
            return;
        }
        c->nfree--;
        c->outstanding++;
        L.slots[s].sent_ns = now_ns();
        L.slots[s].serial = serial;
        L.slots[s].active = 1;
        L.sent++;
    }
}

static void fill_all(void) {
    for (int j = 0; j < L.nsess; j++) fill(j);
}

/* The slot (and its session) of a token, or -1 if it is no request in flight on session. */
static int slot_of(coap_session_t *session, coap_bin_const_t tok) {
    if (tok.length != 8) return -1;
    const uint8_t *b = tok.s;
    uint32_t s = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    uint32_t serial = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
    if (s >= (uint32_t)L.window || !L.slots[s].active || L.slots[s].serial != serial ||
        L.sess[s % (uint32_t)L.nsess].session != session)
        return -1;
    return (int)s;
}

static void finish(int s) {
    struct sess *c = &L.sess[s % L.nsess];
    L.slots[s].active = 0;
    c->free_slots[c->nfree++] = s;
    c->outstanding--;
}

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid) {
    (void)sent, (void)mid;
    int64_t t = now_ns();
    int s = slot_of(session, coap_pdu_get_token(received));
    if (s < 0) {
        L.stray++;
        return COAP_RESPONSE_OK;
    }
    finish(s);
    if (L.answered < L.requests) {
        int64_t us = (t - L.slots[s].sent_ns) / 1000;
        L.lat[L.answered++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    }
    if (t < L.deadline) fill(s % L.nsess);
    return COAP_RESPONSE_OK;
}

/* libcoap gave up on a request (retransmissions exhausted, RST, ICMP error) */
static void on_nack(coap_session_t *session, const coap_pdu_t *sent,
                    const coap_nack_reason_t reason, const coap_mid_t mid) {
    (void)mid;
    if (reason == COAP_NACK_ICMP_ISSUE) L.unreachable = 1;
    if (!sent) return;
    int s = slot_of(session, coap_pdu_get_token(sent));
    if (s < 0) return;
    finish(s);
    L.lost++;
    if (now_ns() < L.deadline) fill(s % L.nsess);
}

int main(int argc, char **argv) {
    struct load_args args = parse_load_args(argc, argv, 1, MAX_SOCKETS, usage);
    const char *target_s = args.target, *path = args.path;
    long long window = args.window, requests = args.requests, seconds = args.seconds,
              server_pid = args.server_pid, nsockets = args.sockets;

    for (const char *p = path; *p;) {
        while (*p == '/') p++;
        const char *e = p;
        while (*e && *e != '/') e++;
        if (e > p) {
            if (L.nseg == 64 || e - p > 255) {
                fprintf(stderr, "--path %s: too long\n", path);
                return 2;
            }
            L.seg[L.nseg] = p;
            L.seg_len[L.nseg++] = (size_t)(e - p);
        }
        p = e;
    }

    coap_startup();
    coap_set_log_level(LOG_WARNING);
    parse_coap_addr(target_s, &L.dst);
    L.ctx = coap_new_context(NULL);
    if (!L.ctx) {
        fprintf(stderr, "coap_new_context failed\n");
        return 2;
    }
    coap_register_response_handler(L.ctx, on_response);
    coap_register_nack_handler(L.ctx, on_nack);

    L.window = (int)window;
    L.nsess = (int)nsockets;
    L.requests = requests;
    L.slots = calloc((size_t)window, sizeof *L.slots);
    int *slot_pool = malloc((size_t)window * sizeof *slot_pool);
    L.lat = malloc((size_t)requests * sizeof *L.lat);
    if (!L.slots || !slot_pool || !L.lat) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    /* Session j gets slots j, j + K, j + 2K, ...; its free list is a slice of slot_pool. */
    for (int j = 0, off = 0, K = L.nsess; j < K; j++) {
        struct sess *c = &L.sess[j];
        c->nslots = (L.window - j + K - 1) / K;
        c->free_slots = slot_pool + off;
        off += c->nslots;
        for (int i = 0; i < c->nslots; i++) c->free_slots[c->nfree++] = j + (c->nslots - 1 - i) * K;
        new_session(j);
    }
    L.next_serial = 1;

    long long srv_before = server_pid > 0 ? proc_cpu_us(server_pid) : -1;
    long long cli_before = self_cpu_us();
    const int64_t start = now_ns();
    L.deadline = start + seconds * 1000000000LL;
    fill_all();
    int64_t now = start;
    while (L.answered < L.requests && now < L.deadline && L.send_failed <= 1000 &&
           !L.unreachable) {
        int64_t ms = (L.deadline - now + 999999) / 1000000;
        if (ms > 100) ms = 100;
        if (coap_io_process(L.ctx, (uint32_t)ms) < 0) {
            fprintf(stderr, "coap_io_process failed\n");
            break;
        }
        now = now_ns();
        /* Replaced here, outside libcoap's handlers: a drained session whose message IDs are
         * used up. */
        for (int j = 0; j < L.nsess; j++) {
            struct sess *c = &L.sess[j];
            if (c->draining && c->outstanding == 0) {
                coap_session_release(c->session);
                new_session(j);
                L.rotations++;
            }
        }
        fill_all(); /* after a failed send, a nack outside a handler or a new session */
    }
    const int64_t end = now_ns();
    long long cli_after = self_cpu_us();
    long long srv_after = server_pid > 0 ? proc_cpu_us(server_pid) : -1;

    long long unanswered = 0;
    for (int s = 0; s < L.window; s++) {
        if (!L.slots[s].active) continue;
        unanswered++;
        if (end - L.slots[s].sent_ns > LOST_AFTER_NS) L.lost++;
    }
    print_result(L.window, L.answered, end - start, L.lat, srv_before, srv_after, cli_before,
                 cli_after);
    if (L.lost || L.stray || L.send_failed)
        fprintf(stderr,
                "libcoap_client_load: lost=%lld stray=%lld send_failed=%lld (sent=%lld, "
                "unanswered at the end=%lld, sessions=%d, replaced=%lld)\n",
                L.lost, L.stray, L.send_failed, L.sent, unanswered, L.nsess, L.rotations);
    if (getenv("BARE_UDP_VERBOSE"))
        fprintf(stderr, "libcoap_client_load: sent=%lld sessions=%d replaced=%lld\n", L.sent,
                L.nsess, L.rotations);

    for (int j = 0; j < L.nsess; j++) coap_session_release(L.sess[j].session);
    coap_free_context(L.ctx);
    coap_cleanup();
    free(L.slots);
    free(slot_pool);
    free(L.lat);
    if (L.answered == 0) {
        fprintf(stderr, "no answers from %s%s\n", target_s,
                L.unreachable ? " (ICMP error: is a server listening there?)" : "");
        return 1;
    }
    return 0;
}
