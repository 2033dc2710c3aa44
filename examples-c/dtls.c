/*
 * dtls: CoAP over DTLS (coaps://, pre-shared key) with the C ABI, a server and a client
 * context in one program (mode A). Needs the library built with the `dtls` feature.
 *
 *   dtls [IDENTITY KEY]
 *
 * The server context is bound to [::1] with the pre-shared key (identity "c-example", key
 * "c-example-key" by default) and serves /secret; the client context has the same key and
 * GETs coaps://[::1]:PORT/secret, then a second time over the same session. A client with a
 * wrong key gets no answer: its request fails with COAPIO_RESULT_SECURITY when its handshake
 * timeout (set to 500 ms) runs out. Exits 0 when all of that happened, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "coapio.h"

struct outcome {
    int done;
    coapio_result result;
    char text[128];
};

static void on_secret(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)userdata;
    (void)req;
    const char *text = "only for those with the key";
    coapio_responder_respond(r, COAPIO_CODE_CONTENT, (const uint8_t *)text, strlen(text), COAPIO_FORMAT_TEXT_PLAIN);
}

static void on_response(void *userdata, coapio_result result, const coapio_response *resp) {
    struct outcome *o = userdata;
    o->done = 1;
    o->result = result;
    if (result == COAPIO_RESULT_OK) {
        const uint8_t *p = NULL;
        size_t len = 0;
        coapio_response_payload(resp, &p, &len);
        snprintf(o->text, sizeof o->text, "%.*s", (int)len, (const char *)p);
    } else {
        /* What failed (a DTLS alert, a rejected certificate), said during the callback. */
        size_t n = 0;
        coapio_last_error(o->text, sizeof o->text, &n);
    }
}

/* A context with a pre-shared key; handshake_ms > 0 sets how long a handshake may take. */
static coapio_context *context(const char *bind, const char *identity, const char *key,
                               uint32_t handshake_ms) {
    coapio_config *cfg = NULL;
    coapio_context *ctx = NULL;
    if (coapio_config_new(&cfg) != COAPIO_RESULT_OK) {
        return NULL;
    }
    if ((bind == NULL || coapio_config_set_bind(cfg, bind) == COAPIO_RESULT_OK) &&
        coapio_config_set_psk(cfg, (const uint8_t *)identity, strlen(identity),
                              (const uint8_t *)key, strlen(key)) == COAPIO_RESULT_OK &&
        (handshake_ms == 0 ||
         coapio_config_set_dtls_handshake_timeout_ms(cfg, handshake_ms) == COAPIO_RESULT_OK)) {
        coapio_context_new(cfg, &ctx);
    }
    coapio_config_free(cfg);
    return ctx;
}

/* GETs uri from client while both contexts run; the outcome after at most `rounds` × 10 ms. */
static struct outcome get(coapio_context *server, coapio_context *client, const char *uri,
                          int rounds) {
    struct outcome o = {0};
    coapio_request *req = NULL;
    coapio_request_new(COAPIO_METHOD_GET, uri, &req);
    if (coapio_context_send(client, req, on_response, &o, NULL) != COAPIO_RESULT_OK) {
        o.done = 1;
        o.result = COAPIO_RESULT_REFUSED;
        return o;
    }
    for (int i = 0; i < rounds && !o.done; i++) {
        coapio_context_run(server, 5);
        coapio_context_run(client, 5);
    }
    return o;
}

int main(int argc, char **argv) {
    const char *identity = argc > 2 ? argv[1] : "c-example";
    const char *key = argc > 2 ? argv[2] : "c-example-key";
    coapio_context *server = context("[::1]:0", identity, key, 0);
    coapio_context *client = context(NULL, identity, key, 0);
    /* A wrong key shows only as a handshake that never completes: give up after 500 ms. */
    coapio_context *stranger = context(NULL, identity, "not-the-key", 500);
    if (server == NULL || client == NULL || stranger == NULL) {
        char msg[256];
        size_t n = 0;
        coapio_last_error(msg, sizeof msg, &n);
        fprintf(stderr, "setup failed: %s\n", msg);
        return 1;
    }
    coapio_context_add_resource(server, "/secret", COAPIO_METHOD_MASK_GET, on_secret, NULL);
    uint16_t port = 0;
    coapio_context_local_port(server, &port);
    char uri[64];
    snprintf(uri, sizeof uri, "coaps://[::1]:%u/secret", port);

    int ok = 1;
    for (int round = 1; round <= 2; round++) {
        struct outcome o = get(server, client, uri, 500);
        printf("client: GET %s -> %s \"%s\"\n", uri, coapio_result_str(o.result), o.text);
        ok &= o.done && o.result == COAPIO_RESULT_OK;
    }
    /* A wrong key: the server never decrypts the stranger's Finished, so no answer comes;
       the stranger's request fails when its handshake timeout runs out. */
    struct outcome refused = get(server, stranger, uri, 300);
    printf("stranger with a wrong key: %s (%s)\n",
           refused.done ? coapio_result_str(refused.result) : "no answer", refused.text);
    ok &= refused.done && refused.result == COAPIO_RESULT_SECURITY;
    printf(ok ? "done: DTLS works from C\n" : "failed\n");
    coapio_context_free(stranger);
    coapio_context_free(client);
    coapio_context_free(server);
    return ok ? 0 : 1;
}
