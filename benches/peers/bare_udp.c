/*
 * bare_udp: the "bare" CoAP baseline, the least work a CoAP server or client can do over UDP,
 * to compare real CoAP stacks (coapio, libcoap, ...) against. Linux only (epoll, recvmmsg,
 * sendmmsg, /proc). No CoAP library: a few fixed bytes are checked and written by hand.
 *
 * Build:
 *   cc -O2 -Wall -Wextra -std=c11 -o target/peers/bare_udp benches/peers/bare_udp.c
 *
 * Server:
 *   bare_udp server --bind 127.0.0.1:PORT [--batch 64]
 *     One non-blocking UDP socket; waits in epoll_wait, then drains it with recvmmsg (up to
 *     --batch datagrams a call; a call that returns fewer than --batch means the socket is
 *     drained, so no further call is made to collect an EAGAIN). Every datagram that is a
 *     CoAP Confirmable request (version 1, type CON, code class 0 and not 0.00 - the empty
 *     message is no request -, TKL <= 8, length >= 4 + TKL) is answered with a piggybacked
 *     ACK: code 2.05, the request's message ID and token, Content-Format 0 (one option byte,
 *     0xC0), payload marker 0xFF and "Hello, world!". Nothing else is looked at (options and
 *     payload of the request are skipped unparsed); anything else is ignored. All replies of
 *     one recvmmsg batch go out in one sendmmsg. Runs until SIGTERM or SIGINT, then exits 0.
 *
 * Client (load generator):
 *   bare_udp client --target 127.0.0.1:PORT [--path /hello] [--window W] [--requests N]
 *                   [--seconds S] [--server-pid PID] [--sockets K]
 *     Keeps W Confirmable GETs (Uri-Path options from --path, each request with its own
 *     message ID and an 8-byte token: slot number + serial) in flight over K (default 1, at
 *     most 64 and at most W) connected, non-blocking UDP sockets, slot s of the window on
 *     socket s % K (K source ports, so that a server's SO_REUSEPORT workers get different
 *     remotes); waits in poll, receives with recvmmsg (batches of up to min(the socket's share
 *     of W, 256); drained when a call returns fewer, or nothing is outstanding on it) and
 *     sends the new requests of a socket with one sendmmsg. Message IDs are 16 bits and a
 *     server deduplicates by (remote, message ID) for EXCHANGE_LIFETIME (247 s), so a socket
 *     never reuses one: after 65536 requests it sends nothing more until its requests are
 *     answered (or counted lost), and is then closed and replaced by a new socket on a source
 *     port not used before in this run (set BARE_UDP_VERBOSE=1 to see how many were replaced
 *     on stderr). A piggybacked response (ACK, response
 *     code) matching an outstanding request (token and message ID) completes it and a new
 *     request takes its place; a request unanswered for 2 s is counted lost (no
 *     retransmission). At most N + lost requests are sent. Stops after N answers or S
 *     seconds and prints one line, the format of benches/loadgen.rs's numbers:
 *       window=W answered=A seconds=T req/s=R p50=Xus p99=Yus server_cpu_per_req=Zus client_cpu_per_req=Cus
 *     Latency: CLOCK_MONOTONIC from just after the sendmmsg that sent a request to just after
 *     the recvmmsg that received its answer, in whole microseconds; the percentiles are of the
 *     first N latencies (kept in a preallocated array). server_cpu_per_req: the server's user +
 *     system time (/proc/PID/stat, as benches/support/cpu.rs) before and after, per answer;
 *     "-" without --server-pid. client_cpu_per_req: getrusage(RUSAGE_SELF) user + system,
 *     per answer. Lost and stray (unmatched) datagrams, when there are any, are reported on
 *     stderr. Exits 1 when nothing was answered.
 *
 * Example (loopback, server and client on separate cores):
 *   taskset -c 0 target/peers/bare_udp server --bind 127.0.0.1:5699 & pid=$!
 *   taskset -c 1 target/peers/bare_udp client --target 127.0.0.1:5699 --path /hello \
 *       --window 64 --requests 50000 --seconds 5 --server-pid $pid
 *   kill $pid
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "load_common.h"

#define MAX_DGRAM 2048
#define LOST_AFTER_NS 2000000000LL

static const char HELLO[] = "Hello, world!";

/* ---------------------------------------------------------------- shared helpers */

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void usage(void) {
    fprintf(stderr,
            "usage: bare_udp server --bind ADDR:PORT [--batch 64]\n"
            "       bare_udp client --target ADDR:PORT [--path /hello] [--window W] "
            "[--requests N] [--seconds S] [--server-pid PID] [--sockets K]\n");
    exit(2);
}



/* ---------------------------------------------------------------- server */

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

/* Writes the reply to req (len bytes) into out; returns its length, or 0 to ignore req. */
static size_t answer(const uint8_t *req, size_t len, uint8_t *out) {
    if (len < 4) return 0;
    unsigned ver = req[0] >> 6, type = (req[0] >> 4) & 3, tkl = req[0] & 0x0f;
    if (ver != 1 || type != 0 || tkl > 8 || (req[1] >> 5) != 0 || req[1] == 0 || len < 4 + tkl)
        return 0;
    out[0] = (uint8_t)(0x60 | tkl); /* version 1, ACK, TKL */
    out[1] = 0x45;                  /* 2.05 Content */
    out[2] = req[2];                /* message ID */
    out[3] = req[3];
    memcpy(out + 4, req + 4, tkl);
    size_t n = 4 + tkl;
    out[n++] = 0xC0; /* Content-Format (12), length 0: text/plain;charset=utf-8 */
    out[n++] = 0xFF;
    memcpy(out + n, HELLO, sizeof HELLO - 1);
    return n + sizeof HELLO - 1;
}

static int run_server(int argc, char **argv) {
    const char *bind_s = NULL;
    int batch = 64;
    for (int i = 0; i < argc; i += 2) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--bind")) bind_s = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = (int)parse_num(argv[i], argv[i + 1], 1, 1024);
        else usage();
    }
    if (!bind_s) usage();

    struct sockaddr_storage addr;
    socklen_t alen = parse_addr(bind_s, &addr);
    int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (bind(fd, (struct sockaddr *)&addr, alen) < 0) die("bind");

    /* SIGTERM/SIGINT are blocked except inside epoll_pwait, so none is missed between the
     * check of `stop` and the wait. */
    sigset_t block, wait_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    if (sigprocmask(SIG_BLOCK, &block, &wait_mask) < 0) die("sigprocmask");
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGINT);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");

    uint8_t *rbuf = malloc((size_t)batch * MAX_DGRAM);
    uint8_t *sbuf = malloc((size_t)batch * 32);
    struct sockaddr_storage *peers = calloc((size_t)batch, sizeof *peers);
    struct mmsghdr *rmsg = calloc((size_t)batch, sizeof *rmsg);
    struct mmsghdr *smsg = calloc((size_t)batch, sizeof *smsg);
    struct iovec *riov = calloc((size_t)batch, sizeof *riov);
    struct iovec *siov = calloc((size_t)batch, sizeof *siov);
    if (!rbuf || !sbuf || !peers || !rmsg || !smsg || !riov || !siov) die("malloc");
    for (int i = 0; i < batch; i++) {
        riov[i].iov_base = rbuf + (size_t)i * MAX_DGRAM;
        riov[i].iov_len = MAX_DGRAM;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
        rmsg[i].msg_hdr.msg_name = &peers[i];
    }

    while (!stop) {
        struct epoll_event got;
        int r = epoll_pwait(ep, &got, 1, -1, &wait_mask);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("epoll_pwait");
        }
        /* Drain: until a call returns fewer than batch; after 16 full batches back to
         * epoll_pwait (level-triggered, returns at once) so that a signal is seen. */
        for (int round = 0; round < 16; round++) {
            for (int i = 0; i < batch; i++) rmsg[i].msg_hdr.msg_namelen = sizeof peers[i];
            int n = recvmmsg(fd, rmsg, (unsigned)batch, MSG_DONTWAIT, NULL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
                if (errno == ECONNREFUSED || errno == ENOBUFS) break; /* transient */
                die("recvmmsg");
            }
            int out = 0;
            for (int i = 0; i < n; i++) {
                uint8_t *o = sbuf + (size_t)out * 32;
                size_t len = answer(riov[i].iov_base, rmsg[i].msg_len, o);
                if (!len) continue;
                siov[out].iov_base = o;
                siov[out].iov_len = len;
                smsg[out].msg_hdr.msg_iov = &siov[out];
                smsg[out].msg_hdr.msg_iovlen = 1;
                smsg[out].msg_hdr.msg_name = &peers[i];
                smsg[out].msg_hdr.msg_namelen = rmsg[i].msg_hdr.msg_namelen;
                out++;
            }
            /* One sendmmsg; only if it stops short (send buffer full) is the rest retried,
             * a bounded number of times, and then dropped as a busy UDP server would. */
            for (int done = 0, tries = 0; done < out && tries < 4; tries++) {
                int s = sendmmsg(fd, smsg + done, (unsigned)(out - done), MSG_DONTWAIT);
                if (s <= 0) break;
                done += s;
            }
            if (n < batch) break;
        }
    }
    close(ep);
    close(fd);
    free(rbuf);
    free(sbuf);
    free(peers);
    free(rmsg);
    free(smsg);
    free(riov);
    free(siov);
    return 0;
}

/* ---------------------------------------------------------------- client */

/* A message ID is 16 bits: a socket sends at most MID_SPACE requests (every ID once), then it
 * is retired (see struct csock). */
#define MID_SPACE 65536u
#define MAX_SOCKETS 64

struct slot {
    int64_t sent_ns;
    uint32_t serial;
    uint16_t mid;
    uint8_t active;
};

/* One client socket (one source port, one message ID space) and the slots of the window that
 * are its share (slot s belongs to socket s % K). A server deduplicates by (remote, message
 * ID) for EXCHANGE_LIFETIME (247 s), so a message ID is never used twice from one port: once
 * MID_SPACE IDs are used, the socket sends nothing more (draining) until all its requests are
 * answered or counted lost, and is then replaced by a fresh socket on a port not used before
 * in this run. */
struct csock {
    int fd;
    uint16_t next_mid;
    uint32_t mids_used;
    int draining;
    int nslots;
    int *free_slots;
    int nfree;
    long long outstanding;
};

static uint8_t port_used[65536]; /* source ports this client has had, for the whole run */

/* A new connected socket on a source port this run has not used yet. */
static int open_client_socket(const struct sockaddr_storage *addr, socklen_t alen) {
    int rejected[32], nrej = 0, fd = -1;
    while (1) {
        fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (const struct sockaddr *)addr, alen) < 0) die("connect");
        struct sockaddr_storage me;
        socklen_t ml = sizeof me;
        if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0) die("getsockname");
        uint16_t port = ntohs(me.ss_family == AF_INET ? ((struct sockaddr_in *)&me)->sin_port
                                                      : ((struct sockaddr_in6 *)&me)->sin6_port);
        if (!port_used[port]) {
            port_used[port] = 1;
            break;
        }
        /* Kept open until a fresh port is found, so the kernel does not hand it out again. */
        if (nrej == (int)(sizeof rejected / sizeof *rejected)) {
            fprintf(stderr, "bare_udp client: no fresh source port after %d sockets\n", nrej);
            exit(2);
        }
        rejected[nrej++] = fd;
    }
    for (int i = 0; i < nrej; i++) close(rejected[i]);
    return fd;
}

static void fresh_socket(struct csock *c, const struct sockaddr_storage *addr, socklen_t alen) {
    c->fd = open_client_socket(addr, alen);
    c->next_mid = (uint16_t)rand();
    c->mids_used = 0;
    c->draining = 0;
}

static int run_client(int argc, char **argv) {
    struct load_args args = parse_load_args(argc, argv, 0, MAX_SOCKETS, usage);
    const char *target_s = args.target, *path = args.path;
    long long window = args.window, requests = args.requests, seconds = args.seconds,
              server_pid = args.server_pid, nsockets = args.sockets;

    struct sockaddr_storage addr;
    socklen_t alen = parse_addr(target_s, &addr);

    /* Uri-Path options, encoded once: option 11, then delta 0 for every further segment. */
    uint8_t opts[512];
    size_t olen = 0;
    unsigned last = 0;
    for (const char *p = path; *p;) {
        while (*p == '/') p++;
        const char *e = p;
        while (*e && *e != '/') e++;
        size_t sl = (size_t)(e - p);
        if (sl) {
            unsigned delta = 11 - last;
            last = 11;
            if (sl > 255 || olen + 3 + sl > sizeof opts) {
                fprintf(stderr, "--path %s: too long\n", path);
                return 2;
            }
            if (sl < 13) {
                opts[olen++] = (uint8_t)(delta << 4 | sl);
            } else {
                opts[olen++] = (uint8_t)(delta << 4 | 13);
                opts[olen++] = (uint8_t)(sl - 13);
            }
            memcpy(opts + olen, p, sl);
            olen += sl;
        }
        p = e;
    }

    const int W = (int)window, K = (int)nsockets;
    const int batch = W < 256 ? W : 256;
    struct slot *slots = calloc((size_t)W, sizeof *slots);
    struct csock *socks = calloc((size_t)K, sizeof *socks);
    int *slot_pool = malloc((size_t)W * sizeof *slot_pool);
    uint32_t *lat = malloc((size_t)requests * sizeof *lat);
    uint8_t *sbuf = malloc((size_t)batch * (12 + sizeof opts));
    uint8_t *rbuf = malloc((size_t)batch * MAX_DGRAM);
    struct mmsghdr *smsg = calloc((size_t)batch, sizeof *smsg);
    struct mmsghdr *rmsg = calloc((size_t)batch, sizeof *rmsg);
    struct iovec *siov = calloc((size_t)batch, sizeof *siov);
    struct iovec *riov = calloc((size_t)batch, sizeof *riov);
    int *sent_slot = malloc((size_t)batch * sizeof *sent_slot);
    if (!slots || !socks || !slot_pool || !lat || !sbuf || !rbuf || !smsg || !rmsg || !siov ||
        !riov || !sent_slot)
        die("malloc");
    const size_t req_cap = 12 + olen;
    for (int i = 0; i < batch; i++) {
        siov[i].iov_base = sbuf + (size_t)i * (12 + sizeof opts);
        smsg[i].msg_hdr.msg_iov = &siov[i];
        smsg[i].msg_hdr.msg_iovlen = 1;
        riov[i].iov_base = rbuf + (size_t)i * MAX_DGRAM;
        riov[i].iov_len = MAX_DGRAM;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }

    srand((unsigned)(now_ns() ^ getpid()));
    /* Socket j gets slots j, j + K, j + 2K, ...; its free list is a slice of slot_pool. */
    for (int j = 0, off = 0; j < K; j++) {
        struct csock *c = &socks[j];
        c->nslots = (W - j + K - 1) / K;
        c->free_slots = slot_pool + off;
        off += c->nslots;
        for (int i = 0; i < c->nslots; i++) c->free_slots[c->nfree++] = j + (c->nslots - 1 - i) * K;
        fresh_socket(c, &addr, alen);
    }
    uint32_t next_serial = 1;
    long long answered = 0, sent = 0, lost = 0, stray = 0, outstanding = 0, rotations = 0;
    struct pollfd pfd[MAX_SOCKETS];

    long long srv_before = server_pid > 0 ? proc_cpu_us(server_pid) : -1;
    long long cli_before = self_cpu_us();
    const int64_t start = now_ns();
    const int64_t deadline = start + seconds * 1000000000LL;
    int64_t now = start, next_lost_check = start + 100000000LL;

    while (answered < requests && now < deadline) {
        for (int j = 0; j < K; j++) {
            struct csock *c = &socks[j];
            /* A drained socket whose message IDs are used up: replaced by a fresh one. */
            if (c->draining && c->outstanding == 0) {
                close(c->fd);
                fresh_socket(c, &addr, alen);
                rotations++;
            }
            /* Fill this socket's share of the window: one sendmmsg per batch. */
            while (c->nfree > 0 && !c->draining && sent < requests + lost) {
                int k = 0;
                while (k < batch && c->nfree > 0 && sent + k < requests + lost) {
                    if (c->mids_used == MID_SPACE) {
                        c->draining = 1;
                        break;
                    }
                    int s = c->free_slots[--c->nfree];
                    uint8_t *b = siov[k].iov_base;
                    uint16_t mid = c->next_mid++;
                    c->mids_used++; /* also when the datagram is not sent: never reused */
                    uint32_t serial = next_serial++;
                    b[0] = 0x48; /* version 1, CON, TKL 8 */
                    b[1] = 0x01; /* GET */
                    b[2] = (uint8_t)(mid >> 8);
                    b[3] = (uint8_t)mid;
                    uint32_t sl = (uint32_t)s;
                    b[4] = (uint8_t)(sl >> 24), b[5] = (uint8_t)(sl >> 16);
                    b[6] = (uint8_t)(sl >> 8), b[7] = (uint8_t)sl;
                    b[8] = (uint8_t)(serial >> 24), b[9] = (uint8_t)(serial >> 16);
                    b[10] = (uint8_t)(serial >> 8), b[11] = (uint8_t)serial;
                    memcpy(b + 12, opts, olen);
                    siov[k].iov_len = req_cap;
                    slots[s].mid = mid;
                    slots[s].serial = serial;
                    sent_slot[k] = s;
                    k++;
                }
                if (k == 0) break;
                int n = sendmmsg(c->fd, smsg, (unsigned)k, MSG_DONTWAIT);
                if (n < 0) n = 0;
                int64_t t = now_ns();
                for (int i = 0; i < k; i++) {
                    int s = sent_slot[i];
                    if (i < n) {
                        slots[s].sent_ns = t;
                        slots[s].active = 1;
                        c->outstanding++;
                        outstanding++;
                    } else {
                        c->free_slots[c->nfree++] = s; /* not sent: again after the next wait */
                    }
                }
                sent += n;
                if (n < k) break;
            }
            pfd[j].fd = c->fd;
            pfd[j].events = POLLIN;
            pfd[j].revents = 0;
        }

        /* Wait for answers (at most until the next lost check or the deadline). */
        int64_t wake = next_lost_check < deadline ? next_lost_check : deadline;
        int64_t ms = (wake - now_ns() + 999999) / 1000000;
        if (ms < 0) ms = 0;
        int pr = poll(pfd, (nfds_t)K, (int)ms);
        if (pr < 0 && errno != EINTR) die("poll");
        for (int j = 0; pr > 0 && j < K; j++) {
            struct csock *c = &socks[j];
            if (!pfd[j].revents) continue;
            const int rb = c->nslots < batch ? c->nslots : batch;
            /* Drain (bounded; the outer loop comes back). */
            for (int round = 0; round < 16; round++) {
                int n = recvmmsg(c->fd, rmsg, (unsigned)rb, MSG_DONTWAIT, NULL);
                if (n < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
                    if (errno == ECONNREFUSED) {
                        fprintf(stderr, "receive failed: %s (is a server listening on %s?)\n",
                                strerror(errno), target_s);
                        return 1;
                    }
                    die("recvmmsg");
                }
                int64_t t = now_ns();
                for (int i = 0; i < n; i++) {
                    const uint8_t *m = riov[i].iov_base;
                    size_t len = rmsg[i].msg_len;
                    /* version 1, ACK, TKL 8, a response code (class 2-5) */
                    if (len < 12 || m[0] != 0x68 || (m[1] >> 5) < 2 || (m[1] >> 5) > 5) {
                        stray++;
                        continue;
                    }
                    uint32_t s = (uint32_t)m[4] << 24 | (uint32_t)m[5] << 16 |
                                 (uint32_t)m[6] << 8 | m[7];
                    uint32_t serial = (uint32_t)m[8] << 24 | (uint32_t)m[9] << 16 |
                                      (uint32_t)m[10] << 8 | m[11];
                    uint16_t mid = (uint16_t)(m[2] << 8 | m[3]);
                    if (s >= (uint32_t)W || s % (uint32_t)K != (uint32_t)j || !slots[s].active ||
                        slots[s].serial != serial || slots[s].mid != mid) {
                        stray++;
                        continue;
                    }
                    slots[s].active = 0;
                    c->free_slots[c->nfree++] = (int)s;
                    c->outstanding--;
                    outstanding--;
                    if (answered < requests) {
                        int64_t us = (t - slots[s].sent_ns) / 1000;
                        lat[answered++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
                    }
                }
                /* Drained when a call returns fewer than asked for, or when nothing is left
                 * outstanding (so window 1, batch 1, makes no call that returns EAGAIN). */
                if (n < rb || c->outstanding == 0) break;
            }
        }

        now = now_ns();
        if (now >= next_lost_check) {
            for (int s = 0; s < W; s++) {
                if (slots[s].active && now - slots[s].sent_ns > LOST_AFTER_NS) {
                    struct csock *c = &socks[s % K];
                    slots[s].active = 0;
                    c->free_slots[c->nfree++] = s;
                    c->outstanding--;
                    outstanding--;
                    lost++;
                }
            }
            next_lost_check = now + 100000000LL;
        }
    }

    const int64_t end = now_ns();
    long long cli_after = self_cpu_us();
    long long srv_after = server_pid > 0 ? proc_cpu_us(server_pid) : -1;
    print_result(W, answered, end - start, lat, srv_before, srv_after, cli_before, cli_after);
    if (lost || stray)
        fprintf(stderr,
                "bare_udp client: lost=%lld stray=%lld (sent=%lld, unanswered at the end=%lld, "
                "sockets=%d, replaced=%lld)\n",
                lost, stray, sent, outstanding, K, rotations);
    if (getenv("BARE_UDP_VERBOSE"))
        fprintf(stderr, "bare_udp client: sent=%lld sockets=%d replaced=%lld\n", sent, K,
                rotations);
    if (answered == 0) {
        fprintf(stderr, "no answers from %s\n", target_s);
        return 1;
    }
    for (int j = 0; j < K; j++) close(socks[j].fd);
    free(slots);
    free(socks);
    free(slot_pool);
    free(lat);
    free(sbuf);
    free(rbuf);
    free(smsg);
    free(rmsg);
    free(siov);
    free(riov);
    free(sent_slot);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "server")) return run_server(argc - 2, argv + 2);
    if (!strcmp(argv[1], "client")) return run_client(argc - 2, argv + 2);
    usage();
}
