/*
 * Mode B with poll(2): the application owns the event loop, coapio lives inside it.
 *
 *   poll_loop
 *
 * A server context and a client context, in one process and one poll(2) loop. Each context
 * gives the loop one descriptor (coapio_context_get_fd: readable when the context has I/O or
 * a deadline has passed) and the time until its next deadline
 * (coapio_context_next_timeout_ms); on readiness or timeout the loop calls
 * coapio_context_process, which never blocks.
 *
 * The client sends three requests to the server: GET /hello, POST /echo, and GET /slow, which
 * the application answers 300 ms later from its own timer in the same loop (the library sends
 * the empty ACK first and the separate response when the application answers). Each response
 * is printed; the program exits 0 once all three are answered, 1 if they are not within 10 s.
 */
#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coapio.h"

#define SLOW_MS 300
#define LIMIT_MS 10000
#define REQUESTS 3

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The application's state: the /slow responder it holds, and the client's progress. */
struct app {
    coapio_responder *slow; /* answered when slow_due_ms has passed */
    int64_t slow_due_ms;
    int answered;
    int failed;
};

/* What a response callback gets as userdata: which request it was. */
struct sent {
    struct app *app;
    const char *what;
};

/* ---- the server's resources ----------------------------------------------------------------- */

static void on_hello(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)userdata;
    (void)req;
    const char *text = "Hello from the poll loop";
    printf("server: GET /hello, answering at once\n");
    coapio_responder_respond(r, COAPIO_CODE_CONTENT, (const uint8_t *)text, strlen(text), COAPIO_FORMAT_TEXT_PLAIN);
}

static void on_echo(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)userdata;
    const uint8_t *buf = NULL;
    size_t len = 0;
    coapio_incoming_payload(req, &buf, &len);
    printf("server: POST /echo with %zu bytes, echoing them\n", len);
    coapio_responder_respond(r, COAPIO_CODE_CHANGED, buf, len, COAPIO_FORMAT_TEXT_PLAIN); /* the payload is copied */
}

static void on_slow(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    struct app *app = userdata;
    (void)req;
    printf("server: GET /slow, the application will answer in %d ms\n", SLOW_MS);
    app->slow = r; /* ours until we answer it */
    app->slow_due_ms = now_ms() + SLOW_MS;
}

/* ---- the client ---------------------------------------------------------------------------- */

static void on_response(void *userdata, coapio_result result, const coapio_response *resp) {
    struct sent *s = userdata;
    if (result != COAPIO_RESULT_OK) {
        printf("client: %s failed: %s\n", s->what, coapio_result_str(result));
        s->app->failed++;
        return;
    }
    uint8_t code = 0;
    const uint8_t *buf = NULL;
    size_t len = 0;
    coapio_response_code(resp, &code);
    coapio_response_payload(resp, &buf, &len);
    printf("client: %s -> %d.%02d %s \"%.*s\"\n", s->what, code >> 5, code & 31,
           coapio_code_name(code), (int)len, (const char *)buf);
    s->app->answered++;
}

static coapio_result send_request(coapio_context *cli, uint16_t port, coapio_method method,
                                  const char *path, const char *payload, struct sent *s) {
    char uri[96];
    coapio_request *req = NULL;
    snprintf(uri, sizeof uri, "coap://[::1]:%u%s", (unsigned)port, path);
    coapio_result res = coapio_request_new(method, uri, &req);
    if (res != COAPIO_RESULT_OK) {
        return res;
    }
    if (payload != NULL) {
        coapio_request_set_payload(req, (const uint8_t *)payload, strlen(payload));
    }
    printf("client: sending %s\n", s->what);
    return coapio_context_send(cli, req, on_response, s, NULL);
}

/* ---- the loop ------------------------------------------------------------------------------ */

/* The smaller of two poll timeouts, where -1 means none. */
static int min_timeout(int64_t a, int64_t b) {
    if (a < 0) {
        return b < 0 ? -1 : (int)b;
    }
    if (b < 0) {
        return (int)a;
    }
    return (int)(a < b ? a : b);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    coapio_config *cfg = NULL;
    coapio_context *srv = NULL, *cli = NULL;
    struct app app = {NULL, 0, 0, 0};
    int status = 1;

    if (coapio_config_new(&cfg) != COAPIO_RESULT_OK ||
        coapio_config_set_bind(cfg, "[::1]:0") != COAPIO_RESULT_OK ||
        coapio_context_new(cfg, &srv) != COAPIO_RESULT_OK ||
        coapio_context_new(NULL, &cli) != COAPIO_RESULT_OK) {
        fprintf(stderr, "poll_loop: cannot create the contexts\n");
        goto out;
    }
    coapio_context_add_resource(srv, "/hello", COAPIO_METHOD_MASK_GET, on_hello, &app);
    coapio_context_add_resource(srv, "/echo", COAPIO_METHOD_MASK_POST, on_echo, &app);
    coapio_context_add_resource(srv, "/slow", COAPIO_METHOD_MASK_GET, on_slow, &app);
    uint16_t port = 0;
    coapio_context_local_port(srv, &port);
    printf("server on [::1]:%u; both contexts run in this program's poll(2) loop\n", (unsigned)port);

    struct sent sent[REQUESTS] = {
        {&app, "GET /hello"},
        {&app, "POST /echo \"ping\""},
        {&app, "GET /slow"},
    };
    if (send_request(cli, port, COAPIO_METHOD_GET, "/hello", NULL, &sent[0]) != COAPIO_RESULT_OK ||
        send_request(cli, port, COAPIO_METHOD_POST, "/echo", "ping", &sent[1]) != COAPIO_RESULT_OK ||
        send_request(cli, port, COAPIO_METHOD_GET, "/slow", NULL, &sent[2]) != COAPIO_RESULT_OK) {
        fprintf(stderr, "poll_loop: cannot send a request\n");
        goto out;
    }

    coapio_context *ctxs[2] = {srv, cli};
    struct pollfd fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i].fd = coapio_context_get_fd(ctxs[i]);
        fds[i].events = POLLIN;
    }
    int64_t start = now_ms(), end = start + LIMIT_MS;
    int wakeups = 0;
    while (app.answered + app.failed < REQUESTS && now_ms() < end) {
        /* The poll timeout: the nearest of both contexts' deadlines and the app's own. */
        int timeout = min_timeout(coapio_context_next_timeout_ms(srv),
                                  coapio_context_next_timeout_ms(cli));
        if (app.slow != NULL) {
            int64_t left = app.slow_due_ms - now_ms();
            timeout = min_timeout(timeout, left > 0 ? left : 0);
        }
        timeout = min_timeout(timeout, end - now_ms() > 0 ? end - now_ms() : 0);
        fds[0].revents = fds[1].revents = 0;
        int n = poll(fds, 2, timeout);
        if (n < 0) {
            perror("poll");
            goto out;
        }
        wakeups++;
        /* The application's own timer: answer /slow when it is due. */
        if (app.slow != NULL && now_ms() >= app.slow_due_ms) {
            const char *text = "Slow, but here";
            printf("app: %d ms have passed, answering /slow\n", SLOW_MS);
            coapio_responder_respond(app.slow, COAPIO_CODE_CONTENT, (const uint8_t *)text, strlen(text), COAPIO_FORMAT_TEXT_PLAIN);
            app.slow = NULL; /* consumed */
        }
        /* Process a context whose fd is readable or whose deadline has come. Processing one
           that has nothing to do is harmless (it returns at once). */
        for (int i = 0; i < 2; i++) {
            if ((fds[i].revents & POLLIN) || coapio_context_next_timeout_ms(ctxs[i]) == 0) {
                coapio_result res = coapio_context_process(ctxs[i]);
                if (res != COAPIO_RESULT_OK) {
                    fprintf(stderr, "poll_loop: process: %s\n", coapio_result_str(res));
                    goto out;
                }
            }
        }
    }
    if (app.answered == REQUESTS) {
        printf("all %d requests answered in %lld ms (%d poll wake-ups)\n", REQUESTS,
               (long long)(now_ms() - start), wakeups);
        status = 0;
    } else {
        fprintf(stderr, "poll_loop: %d of %d requests answered, %d failed\n", app.answered,
                REQUESTS, app.failed);
    }
out:
    coapio_responder_free(app.slow); /* NULL unless we stopped early */
    coapio_context_free(cli);
    coapio_context_free(srv);
    coapio_config_free(cfg);
    return status;
}
