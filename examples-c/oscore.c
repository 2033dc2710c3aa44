/*
 * oscore: CoAP protected end to end with OSCORE (RFC 8613) from C, a server and a client
 * context in one program (mode A). Needs the library built with the `oscore` feature.
 *
 *   oscore [CLIENT_CONTEXT_DIR]
 *
 * Both contexts get the security context of RFC 8613 Appendix C.1 as bytes (the client's
 * Sender ID is empty, the server's is 01): the server requires OSCORE on every resource and
 * serves /secret; the client protects the requests to the server's URIs ("coap://[::1]:PORT*")
 * and GETs /secret twice. A client without the context gets 4.01 "OSCORE required". With
 * CLIENT_CONTEXT_DIR (aiocoap's format, e.g. a copy of tests/peers/oscore-ctx/client) the
 * client's context is read from there instead, with its sequence numbers persisted into
 * sequence.json. Exits 0 when all of that happened, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "coapio.h"

static const uint8_t SECRET[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SALT[8] = {0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40};
static const uint8_t SERVER_ID[1] = {0x01};

struct outcome {
    int done;
    coapio_result result;
    uint8_t code;
    char text[128];
};

static void on_secret(void *userdata, const coapio_incoming *req, coapio_responder *r) {
    (void)userdata;
    (void)req;
    const char *text = "sealed end to end";
    coapio_responder_respond(r, COAPIO_CODE_CONTENT, (const uint8_t *)text, strlen(text), COAPIO_FORMAT_TEXT_PLAIN);
}

static void on_response(void *userdata, coapio_result result, const coapio_response *resp) {
    struct outcome *o = userdata;
    o->done = 1;
    o->result = result;
    if (result == COAPIO_RESULT_OK) {
        const uint8_t *p = NULL;
        size_t len = 0;
        coapio_response_code(resp, &o->code);
        coapio_response_payload(resp, &p, &len);
        snprintf(o->text, sizeof o->text, "%.*s", (int)len, (const char *)p);
    } else {
        size_t n = 0;
        coapio_last_error(o->text, sizeof o->text, &n);
    }
}

static void print_error(const char *what) {
    char msg[256];
    size_t n = 0;
    coapio_last_error(msg, sizeof msg, &n);
    fprintf(stderr, "%s: %s\n", what, msg);
}

/* The server: bound to [::1], OSCORE required, the context's Sender ID 01. */
static coapio_context *server_context(void) {
    coapio_config *cfg = NULL;
    coapio_context *ctx = NULL;
    if (coapio_config_new(&cfg) != COAPIO_RESULT_OK) {
        return NULL;
    }
    if (coapio_config_set_bind(cfg, "[::1]:0") == COAPIO_RESULT_OK &&
        coapio_config_add_oscore(cfg, NULL, SERVER_ID, sizeof SERVER_ID, NULL, 0, SECRET,
                                 sizeof SECRET, SALT, sizeof SALT, NULL, 0,
                                 10) == COAPIO_RESULT_OK &&
        coapio_config_require_oscore(cfg, true) == COAPIO_RESULT_OK) {
        coapio_context_new(cfg, &ctx);
    }
    coapio_config_free(cfg);
    return ctx;
}

/* A client protecting requests to URIs that match `pattern` (none when pattern is NULL),
   with the context given as bytes, or read from `dir`. */
static coapio_context *client_context(const char *pattern, const char *dir) {
    coapio_config *cfg = NULL;
    coapio_context *ctx = NULL;
    if (coapio_config_new(&cfg) != COAPIO_RESULT_OK) {
        return NULL;
    }
    coapio_result r = COAPIO_RESULT_OK;
    if (pattern != NULL && dir != NULL) {
        r = coapio_config_add_oscore_dir(cfg, pattern, dir);
    } else if (pattern != NULL) {
        r = coapio_config_add_oscore(cfg, pattern, NULL, 0, SERVER_ID, sizeof SERVER_ID, SECRET,
                                     sizeof SECRET, SALT, sizeof SALT, NULL, 0, 10);
    }
    if (r == COAPIO_RESULT_OK) {
        coapio_context_new(cfg, &ctx);
    }
    coapio_config_free(cfg);
    return ctx;
}

static struct outcome get(coapio_context *server, coapio_context *client, const char *uri) {
    struct outcome o = {0};
    coapio_request *req = NULL;
    if (coapio_request_new(COAPIO_METHOD_GET, uri, &req) != COAPIO_RESULT_OK ||
        coapio_context_send(client, req, on_response, &o, NULL) != COAPIO_RESULT_OK) {
        o.done = 1;
        o.result = COAPIO_RESULT_REFUSED;
        return o;
    }
    for (int i = 0; i < 300 && !o.done; i++) {
        coapio_context_run(server, 5);
        coapio_context_run(client, 5);
    }
    return o;
}

int main(int argc, char **argv) {
    coapio_context *server = server_context();
    if (server == NULL) {
        print_error("server setup failed");
        return 1;
    }
    coapio_context_add_resource(server, "/secret", COAPIO_METHOD_MASK_GET, on_secret, NULL);
    uint16_t port = 0;
    coapio_context_local_port(server, &port);
    char pattern[64], uri[64];
    snprintf(pattern, sizeof pattern, "coap://[::1]:%u*", port);
    snprintf(uri, sizeof uri, "coap://[::1]:%u/secret", port);

    coapio_context *client = client_context(pattern, argc > 1 ? argv[1] : NULL);
    coapio_context *plain = client_context(NULL, NULL);
    if (client == NULL || plain == NULL) {
        print_error("client setup failed");
        return 1;
    }
    int ok = 1;
    for (int round = 1; round <= 2; round++) {
        struct outcome o = get(server, client, uri);
        printf("client with OSCORE: GET %s -> %s %u.%02u \"%s\"\n", uri,
               coapio_result_str(o.result), o.code >> 5, o.code & 31, o.text);
        ok &= o.done && o.result == COAPIO_RESULT_OK && o.code == COAPIO_CODE_CONTENT &&
              strcmp(o.text, "sealed end to end") == 0;
    }
    struct outcome refused = get(server, plain, uri);
    printf("client without OSCORE: %s %u.%02u \"%s\"\n", coapio_result_str(refused.result),
           refused.code >> 5, refused.code & 31, refused.text);
    ok &= refused.done && refused.result == COAPIO_RESULT_OK && refused.code == COAPIO_CODE_UNAUTHORIZED &&
          strcmp(refused.text, "OSCORE required") == 0;
    printf(ok ? "done: OSCORE works from C\n" : "failed\n");
    coapio_context_free(plain);
    coapio_context_free(client);
    coapio_context_free(server);
    return ok ? 0 : 1;
}
