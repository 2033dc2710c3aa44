/*
 * Mode B inside libuv: coapio contexts driven by a libuv event loop.
 *
 *   libuv_loop
 *
 * Each context is watched with a uv_poll_t on its one descriptor (coapio_context_get_fd) and
 * a uv_timer_t that is re-armed from coapio_context_next_timeout_ms after every
 * coapio_context_process. A server context and a client context share the loop; the client
 * sends GET /hello, POST /echo and GET /slow, which the application answers 300 ms later from
 * a uv_timer_t of its own. Each response is printed; once all three are answered the handles
 * are closed and uv_run returns (exit 0); a 10 s watchdog timer ends it otherwise (exit 1).
 *
 * Build: cc ... libuv_loop.c $(pkg-config --cflags --libs libuv) -lcoapio (Debian: libuv1-dev).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "coapio.h"

#define SLOW_MS 300
#define LIMIT_MS 10000
#define REQUESTS 3

/* One coapio context as libuv sees it. */
struct watched {
    coapio_context *ctx;
    uv_poll_t poll;
    uv_timer_t timer;
    const char *name;
};

struct app {
    uv_loop_t *loop;
    struct watched srv, cli;
    uv_timer_t slow_timer; /* the application's own timer for /slow */
    uv_timer_t watchdog;
    coapio_responder *slow;
    int answered, failed;
    bool closing;
};

static void shut_down(struct app *app);

/* ---- driving a context --------------------------------------------------------------------- */

static void process(struct watched *w);

static void on_readable(uv_poll_t *handle, int status, int events) {
    (void)status;
    (void)events;
    process(handle->data);
}

static void on_deadline(uv_timer_t *handle) {
    process(handle->data);
}

/* Does the context's work, then re-arms its timer for its next deadline. */
static void process(struct watched *w) {
    coapio_result res = coapio_context_process(w->ctx);
    if (res != COAPIO_RESULT_OK) {
        fprintf(stderr, "libuv_loop: process %s: %s\n", w->name, coapio_result_str(res));
    }
    struct app *app = w->poll.loop->data;
    if (app->closing) {
        return;
    }
    int64_t ms = coapio_context_next_timeout_ms(w->ctx);
    if (ms >= 0) {
        uv_timer_start(&w->timer, on_deadline, (uint64_t)ms, 0);
    } else {
        uv_timer_stop(&w->timer);
    }
}

static int watch(uv_loop_t *loop, struct watched *w) {
    int r = uv_poll_init(loop, &w->poll, coapio_context_get_fd(w->ctx));
    if (r == 0) {
        r = uv_timer_init(loop, &w->timer);
    }
    if (r != 0) {
        fprintf(stderr, "libuv_loop: watching %s: %s\n", w->name, uv_strerror(r));
        return r;
    }
    w->poll.data = w->timer.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_readable);
    process(w); /* arms the timer for whatever is already due */
    return 0;
}

/* ---- the server ---------------------------------------------------------------------------- */

static void on_hello(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)userdata;
    (void)req;
    const char *text = "Hello from libuv";
    printf("server: GET /hello, answering at once\n");
    coapio_responder_respond(r, COAPIO_CODE_CONTENT, (const uint8_t *)text, strlen(text), COAPIO_FORMAT_TEXT_PLAIN);
}

static void on_echo(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)userdata;
    const uint8_t *buf = NULL;
    size_t len = 0;
    coapio_incoming_payload(req, &buf, &len);
    printf("server: POST /echo with %zu bytes, echoing them\n", len);
    coapio_responder_respond(r, COAPIO_CODE_CHANGED, buf, len, COAPIO_FORMAT_TEXT_PLAIN);
}

static void on_slow_due(uv_timer_t *handle) {
    struct app *app = handle->data;
    const char *text = "Slow, but here";
    printf("app: the uv timer fired after %d ms, answering /slow\n", SLOW_MS);
    /* Wakes the server's descriptor: its uv_poll_t fires and processing sends the answer. */
    coapio_responder_respond(app->slow, COAPIO_CODE_CONTENT, (const uint8_t *)text, strlen(text), COAPIO_FORMAT_TEXT_PLAIN);
    app->slow = NULL;
}

static void on_slow(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    struct app *app = userdata;
    (void)req;
    printf("server: GET /slow, the application will answer in %d ms\n", SLOW_MS);
    app->slow = r;
    uv_timer_start(&app->slow_timer, on_slow_due, SLOW_MS, 0);
}

/* ---- the client ---------------------------------------------------------------------------- */

struct sent {
    struct app *app;
    const char *what;
};

static void on_response(void *userdata, coapio_result result, const coapio_response *resp) {
    struct sent *s = userdata;
    if (result != COAPIO_RESULT_OK) {
        printf("client: %s failed: %s\n", s->what, coapio_result_str(result));
        s->app->failed++;
    } else {
        uint8_t code = 0;
        const uint8_t *buf = NULL;
        size_t len = 0;
        coapio_response_code(resp, &code);
        coapio_response_payload(resp, &buf, &len);
        printf("client: %s -> %d.%02d %s \"%.*s\"\n", s->what, code >> 5, code & 31,
               coapio_code_name(code), (int)len, (const char *)buf);
        s->app->answered++;
    }
    if (s->app->answered + s->app->failed == REQUESTS) {
        shut_down(s->app); /* closing handles from a callback is fine in libuv */
    }
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

/* ---- start and end ------------------------------------------------------------------------- */

static void on_watchdog(uv_timer_t *handle) {
    struct app *app = handle->data;
    fprintf(stderr, "libuv_loop: not all requests answered within %d ms\n", LIMIT_MS);
    shut_down(app);
}

/* Closes every handle, so that uv_run returns. The contexts are freed after that. */
static void shut_down(struct app *app) {
    if (app->closing) {
        return;
    }
    app->closing = true;
    uv_handle_t *handles[] = {
        (uv_handle_t *)&app->srv.poll, (uv_handle_t *)&app->srv.timer,
        (uv_handle_t *)&app->cli.poll, (uv_handle_t *)&app->cli.timer,
        (uv_handle_t *)&app->slow_timer, (uv_handle_t *)&app->watchdog,
    };
    for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++) {
        /* A handle never initialized is still zeroed: UV_UNKNOWN_HANDLE. */
        if (handles[i]->type != UV_UNKNOWN_HANDLE && !uv_is_closing(handles[i])) {
            uv_close(handles[i], NULL);
        }
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    uv_loop_t loop;
    struct app app;
    memset(&app, 0, sizeof app);
    app.loop = &loop;
    app.srv.name = "server";
    app.cli.name = "client";
    int status = 1;
    if (uv_loop_init(&loop) != 0) {
        return 1;
    }
    loop.data = &app;

    coapio_config *cfg = NULL;
    if (coapio_config_new(&cfg) != COAPIO_RESULT_OK ||
        coapio_config_set_bind(cfg, "[::1]:0") != COAPIO_RESULT_OK ||
        coapio_context_new(cfg, &app.srv.ctx) != COAPIO_RESULT_OK ||
        coapio_context_new(NULL, &app.cli.ctx) != COAPIO_RESULT_OK) {
        fprintf(stderr, "libuv_loop: cannot create the contexts\n");
        goto out;
    }
    coapio_context_add_resource(app.srv.ctx, "/hello", COAPIO_METHOD_MASK_GET, on_hello, &app);
    coapio_context_add_resource(app.srv.ctx, "/echo", COAPIO_METHOD_MASK_POST, on_echo, &app);
    coapio_context_add_resource(app.srv.ctx, "/slow", COAPIO_METHOD_MASK_GET, on_slow, &app);
    uint16_t port = 0;
    coapio_context_local_port(app.srv.ctx, &port);
    printf("server on [::1]:%u; both contexts run in a libuv %s loop\n", (unsigned)port,
           uv_version_string());

    uv_timer_init(&loop, &app.slow_timer);
    uv_timer_init(&loop, &app.watchdog);
    app.slow_timer.data = app.watchdog.data = &app;
    uv_timer_start(&app.watchdog, on_watchdog, LIMIT_MS, 0);
    if (watch(&loop, &app.srv) != 0 || watch(&loop, &app.cli) != 0) {
        goto out;
    }

    struct sent sent[REQUESTS] = {
        {&app, "GET /hello"},
        {&app, "POST /echo \"ping\""},
        {&app, "GET /slow"},
    };
    if (send_request(app.cli.ctx, port, COAPIO_METHOD_GET, "/hello", NULL, &sent[0]) != COAPIO_RESULT_OK ||
        send_request(app.cli.ctx, port, COAPIO_METHOD_POST, "/echo", "ping", &sent[1]) != COAPIO_RESULT_OK ||
        send_request(app.cli.ctx, port, COAPIO_METHOD_GET, "/slow", NULL, &sent[2]) != COAPIO_RESULT_OK) {
        fprintf(stderr, "libuv_loop: cannot send a request\n");
        shut_down(&app);
    }
    /* Sending armed the client's retransmission timer: re-arm the uv timer from it. */
    int64_t ms = coapio_context_next_timeout_ms(app.cli.ctx);
    if (ms >= 0 && !app.closing) {
        uv_timer_start(&app.cli.timer, on_deadline, (uint64_t)ms, 0);
    }

    uv_run(&loop, UV_RUN_DEFAULT); /* returns once every handle is closed */
    if (app.answered == REQUESTS) {
        printf("all %d requests answered\n", REQUESTS);
        status = 0;
    }
out:
    if (!app.closing) {
        shut_down(&app);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    coapio_responder_free(app.slow);
    coapio_context_free(app.cli.ctx);
    coapio_context_free(app.srv.ctx);
    coapio_config_free(cfg);
    return status;
}
