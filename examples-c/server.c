/*
 * A CoAP server in mode A: the library runs its own loop (coapio_context_run).
 *
 *   server [BIND] [--exit-after SECONDS]
 *
 * BIND defaults to [::]:5683; with port 0 the server prints the port it got. Resources:
 *   /hello    GET  -> 2.05 "Hello, world!"
 *   /later    GET  -> 2.05, answered about 500 ms later by this program's own timing: the
 *                     responder is kept in a list and answered once its deadline has passed
 *                     (the library sends the empty ACK and then the separate response)
 *   /counter  GET  -> the counter; POST adds one; PUT sets it from the payload (a number)
 * and /.well-known/core lists them with the link attributes set below.
 *
 * It runs until SIGINT or SIGTERM (the handler calls coapio_context_stop, which may be called
 * from a signal handler or another thread), or until --exit-after SECONDS have passed.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coapio.h"

#define LATER_MS 500

/* ---- state -------------------------------------------------------------------------------- */

/* A /later request waiting for its deadline. */
struct pending {
    coapio_responder *responder;
    int64_t due_ms;
    int64_t since_ms;
    struct pending *next;
};

struct server {
    long counter;
    struct pending *later; /* oldest first */
};

static coapio_context *volatile g_ctx;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
    if (g_ctx != NULL) {
        coapio_context_stop(g_ctx);
    }
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *method_name(uint8_t m) {
    static const char *const names[] = {"?", "GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH"};
    return m < sizeof names / sizeof names[0] ? names[m] : "?";
}

/* Answers with a text payload and says so on stdout. */
static void answer(coapio_responder *r, uint8_t code, const char *text) {
    coapio_result res = coapio_responder_respond(r, code, (const uint8_t *)text, strlen(text),
                                                 COAPIO_FORMAT_TEXT_PLAIN);
    if (res != COAPIO_RESULT_OK) {
        printf("  could not answer: %s\n", coapio_result_str(res));
        return;
    }
    printf("  -> %d.%02d %s \"%s\"\n", code >> 5, code & 31, coapio_code_name(code), text);
}

/* Prints "GET /path from [addr]" for a request that came in. */
static uint8_t log_request(const coapio_incoming *req) {
    uint8_t method = 0;
    const char *path = "?", *remote = "?";
    size_t len = 0;
    bool con = true;
    coapio_incoming_method(req, &method);
    coapio_incoming_path(req, &path, &len);
    coapio_incoming_remote(req, &remote);
    coapio_incoming_confirmable(req, &con);
    printf("%s %s from %s (%s)\n", method_name(method), path, remote, con ? "CON" : "NON");
    return method;
}

/* ---- the resources ------------------------------------------------------------------------ */

static void on_hello(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)userdata;
    log_request(req);
    answer(r, COAPIO_CODE_CONTENT, "Hello, world!");
}

static void on_later(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    struct server *s = userdata;
    log_request(req);
    struct pending *p = malloc(sizeof *p);
    if (p == NULL) {
        coapio_responder_free(r); /* the client gets 5.00 */
        return;
    }
    p->responder = r;
    p->since_ms = now_ms();
    p->due_ms = p->since_ms + LATER_MS;
    p->next = NULL;
    struct pending **tail = &s->later;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = p;
    printf("  -> will answer in %d ms (the library acknowledges the request meanwhile)\n", LATER_MS);
}

/* Answers the /later requests whose time has come; called from the main loop. */
static void answer_due(struct server *s) {
    int64_t now = now_ms();
    while (s->later != NULL && s->later->due_ms <= now) {
        struct pending *p = s->later;
        s->later = p->next;
        char text[64];
        snprintf(text, sizeof text, "Answered later, after %lld ms", (long long)(now - p->since_ms));
        printf("/later is due\n");
        answer(p->responder, COAPIO_CODE_CONTENT, text);
        free(p);
    }
}

static void on_counter(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    struct server *s = userdata;
    char text[32];
    uint8_t method = log_request(req);
    if (method == COAPIO_METHOD_GET) {
        snprintf(text, sizeof text, "%ld", s->counter);
        answer(r, COAPIO_CODE_CONTENT, text);
        return;
    }
    if (method == COAPIO_METHOD_POST) {
        s->counter++;
    } else { /* PUT: the payload is the new value */
        const uint8_t *buf = NULL;
        size_t len = 0;
        coapio_incoming_payload(req, &buf, &len);
        char num[32];
        char *end = NULL;
        if (len == 0 || len >= sizeof num) {
            answer(r, COAPIO_CODE_BAD_REQUEST, "PUT a number, such as 42");
            return;
        }
        memcpy(num, buf, len);
        num[len] = '\0';
        errno = 0;
        long v = strtol(num, &end, 10);
        if (errno != 0 || *end != '\0') {
            answer(r, COAPIO_CODE_BAD_REQUEST, "PUT a number, such as 42");
            return;
        }
        s->counter = v;
    }
    snprintf(text, sizeof text, "%ld", s->counter);
    answer(r, COAPIO_CODE_CHANGED, text);
}

/* ---- main --------------------------------------------------------------------------------- */

static int fail(const char *what, coapio_result res) {
    char msg[256] = "";
    size_t n = 0;
    coapio_last_error(msg, sizeof msg, &n);
    fprintf(stderr, "server: %s: %s (%s)\n", what, coapio_result_str(res), msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *bind = "[::]:5683";
    double exit_after = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--exit-after") == 0 && i + 1 < argc) {
            exit_after = strtod(argv[++i], NULL);
        } else if (argv[i][0] != '-') {
            bind = argv[i];
        } else {
            fprintf(stderr, "usage: server [BIND] [--exit-after SECONDS]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    coapio_config *cfg = NULL;
    coapio_context *ctx = NULL;
    coapio_result res = coapio_config_new(&cfg);
    if (res != COAPIO_RESULT_OK) {
        return fail("config", res);
    }
    res = coapio_config_set_bind(cfg, bind);
    if (res != COAPIO_RESULT_OK) {
        coapio_config_free(cfg);
        return fail(bind, res);
    }
    res = coapio_context_new(cfg, &ctx);
    coapio_config_free(cfg);
    if (res != COAPIO_RESULT_OK) {
        return fail(bind, res);
    }

    struct server s = {0, NULL};
    const uint32_t get = COAPIO_METHOD_MASK_GET;
    if ((res = coapio_context_add_resource(ctx, "/hello", get, on_hello, &s)) != COAPIO_RESULT_OK ||
        (res = coapio_context_add_resource(ctx, "/later", get, on_later, &s)) != COAPIO_RESULT_OK ||
        (res = coapio_context_add_resource(ctx, "/counter",
                                           get | COAPIO_METHOD_MASK_POST | COAPIO_METHOD_MASK_PUT,
                                           on_counter, &s)) != COAPIO_RESULT_OK) {
        coapio_context_free(ctx);
        return fail("add a resource", res);
    }
    /* Link attributes for /.well-known/core (NULL value: a bare attribute such as ;obs). */
    coapio_context_set_resource_attr(ctx, "/hello", "rt", "greeting");
    coapio_context_set_resource_attr(ctx, "/hello", "title", "Hello, world");
    coapio_context_set_resource_attr(ctx, "/hello", "ct", "0");
    coapio_context_set_resource_attr(ctx, "/later", "rt", "delayed");
    coapio_context_set_resource_attr(ctx, "/counter", "rt", "counter");
    coapio_context_set_resource_attr(ctx, "/counter", "if", "core.rp");
    coapio_context_set_resource_attr(ctx, "/counter", "ct", "0");

    uint16_t port = 0;
    coapio_context_local_port(ctx, &port);
    const char *colon = strrchr(bind, ':');
    int host_len = colon != NULL ? (int)(colon - bind) : (int)strlen(bind);
    printf("listening on %.*s:%u\n", host_len, bind, (unsigned)port);
    printf("resources: /hello, /later (answered after %d ms), /counter (GET, POST, PUT)\n", LATER_MS);

    g_ctx = ctx;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int64_t end = exit_after >= 0 ? now_ms() + (int64_t)(exit_after * 1000) : -1;
    int status = 0;
    while (!g_stop) {
        /* Runs at most 50 ms (less when stopped), then does the application's own timing. */
        res = coapio_context_run(ctx, 50);
        if (res != COAPIO_RESULT_OK) {
            status = fail("run", res);
            break;
        }
        answer_due(&s);
        if (end >= 0 && now_ms() >= end) {
            printf("--exit-after: %g s have passed\n", exit_after);
            break;
        }
    }
    if (g_stop) {
        printf("stopping on a signal\n");
    }

    /* No signal may reach coapio_context_stop once the context is freed. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    g_ctx = NULL;
    while (s.later != NULL) { /* never answered: the clients get 5.00 */
        struct pending *p = s.later;
        s.later = p->next;
        coapio_responder_free(p->responder);
        free(p);
    }
    coapio_context_free(ctx);
    printf("served; the counter is %ld\n", s.counter);
    return status;
}
