/*
 * observe: RFC 7641 observation with the C ABI, server and client in one program (mode A).
 *
 *   observe [COUNT]
 *
 * The server context serves an observable /counter (the "obs" attribute); the application
 * increments the counter every 200 ms and calls coapio_context_notify, which re-runs the
 * resource's callback for each observer and sends the answer as a notification. The client
 * context observes /counter (coapio_request_set_observe): its response callback is called
 * for the first response and every notification. After COUNT notifications (default 5) the
 * client cancels the observation from inside its callback, telling the server
 * (coapio_context_cancel_observation: the registration again with Observe 1), and the
 * callback gets the server's answer last; the program exits 0 when the server has no
 * observer left, 1 otherwise or after 10 s.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coapio.h"

struct app {
    long counter;
    int seen;
    int wanted;
    bool deregistering;
    bool done;
    uint64_t observation;
    coapio_context *client;
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_counter(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)req;
    struct app *app = userdata;
    char text[32];
    int n = snprintf(text, sizeof text, "%ld", app->counter);
    coapio_responder_respond(r, COAPIO_CODE_CONTENT, (const uint8_t *)text, (size_t)n, COAPIO_FORMAT_TEXT_PLAIN);
}

static void on_notification(void *userdata, coapio_result result, const coapio_response *resp) {
    struct app *app = userdata;
    if (result != COAPIO_RESULT_OK) {
        printf("observation failed: %s\n", coapio_result_str(result));
        app->done = true; /* give up */
        return;
    }
    const uint8_t *obs = NULL, *payload = NULL;
    size_t obs_len = 0, len = 0;
    uint32_t seq = 0;
    bool notification =
        coapio_response_option(resp, COAPIO_OPTION_OBSERVE, 0, &obs, &obs_len) == COAPIO_RESULT_OK;
    if (notification) {
        coapio_option_uint(obs, obs_len, &seq);
    }
    if (app->deregistering && !notification) {
        /* The server's answer to the deregistration: a response without Observe, the last. */
        uint8_t code = 0;
        coapio_response_code(resp, &code);
        printf("deregistered: the server answered %s without Observe\n", coapio_code_name(code));
        app->done = true;
        return;
    }
    coapio_response_payload(resp, &payload, &len);
    printf("notification %d: Observe %lu, counter %.*s\n", app->seen, (unsigned long)seq, (int)len,
           (const char *)payload);
    fflush(stdout);
    if (app->deregistering) {
        return; /* none comes after the deregistration; this is only defensive */
    }
    app->seen++;
    if (app->seen > app->wanted) {
        /* Callable from inside the callback; the answer comes in a later call of it. */
        bool told = false;
        coapio_context_cancel_observation(app->client, app->observation, &told);
        app->deregistering = told;
        app->done = !told;
    }
}

int main(int argc, char **argv) {
    struct app app = {.counter = 0, .seen = 0, .wanted = argc > 1 ? atoi(argv[1]) : 5};
    if (app.wanted <= 0 || app.wanted > 1000) {
        fprintf(stderr, "usage: observe [COUNT]\n");
        return 2;
    }
    coapio_config *cfg = NULL;
    coapio_context *server = NULL;
    if (coapio_config_new(&cfg) != COAPIO_RESULT_OK ||
        coapio_config_set_bind(cfg, "[::1]:0") != COAPIO_RESULT_OK ||
        coapio_context_new(cfg, &server) != COAPIO_RESULT_OK ||
        coapio_context_new(NULL, &app.client) != COAPIO_RESULT_OK) {
        char msg[256];
        size_t n = 0;
        coapio_last_error(msg, sizeof msg, &n);
        fprintf(stderr, "setup failed: %s\n", msg);
        return 1;
    }
    coapio_config_free(cfg);
    coapio_context_add_resource(server, "/counter", COAPIO_METHOD_MASK_GET, on_counter, &app);
    coapio_context_set_resource_attr(server, "/counter", "obs", NULL);
    uint16_t port = 0;
    coapio_context_local_port(server, &port);
    char uri[64];
    snprintf(uri, sizeof uri, "coap://[::1]:%u/counter", port);

    coapio_request *req = NULL;
    coapio_request_new(COAPIO_METHOD_GET, uri, &req);
    coapio_request_set_observe(req, true);
    if (coapio_context_send(app.client, req, on_notification, &app, &app.observation) !=
        COAPIO_RESULT_OK) {
        fprintf(stderr, "cannot send the registration\n");
        return 1;
    }
    printf("observing %s\n", uri);
    int64_t start = now_ms(), last_change = start;
    while (!app.done && now_ms() - start < 10000) {
        coapio_context_run(server, 10);
        coapio_context_run(app.client, 10);
        if (now_ms() - last_change >= 200) {
            last_change = now_ms();
            app.counter++;
            size_t observers = 0;
            coapio_context_notify(server, "/counter", &observers);
        }
    }
    coapio_counters counters = {.size = sizeof counters};
    coapio_context_counters(server, &counters);
    printf("the server has %lu observers now, sent %lu notifications\n",
           (unsigned long)counters.observers, (unsigned long)counters.notifications_sent);
    int ok = app.seen > app.wanted && app.deregistering && counters.observers == 0;
    printf(ok ? "done: %d notifications after the first response\n" : "only %d notifications\n",
           app.seen - 1);
    coapio_context_free(app.client);
    coapio_context_free(server);
    return ok ? 0 : 1;
}
