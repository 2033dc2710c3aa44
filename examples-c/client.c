/*
 * A CoAP client in mode A: the library runs its own loop.
 *
 *   client URI [PUT_PAYLOAD]
 *
 * GETs URI and prints the response code and payload. With PUT_PAYLOAD it then PUTs that
 * payload (as text/plain) to the same URI and prints the result. A request that gets no
 * response (timeout, reset, unreachable) ends the program with one line on stderr and
 * status 1; bad arguments give status 2.
 *
 * The GET shows the asynchronous calls: coapio_context_send with a response callback, then
 * coapio_context_run, which the callback ends with coapio_context_stop. The PUT shows the
 * synchronous convenience, coapio_request_sync.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "coapio.h"

#define TIMEOUT_MS 5000

/* What the response callback found, for main to look at afterwards. */
struct get_outcome {
    coapio_context *ctx;
    bool done;
    coapio_result result;
};

/* Prints "2.05 Content" and the payload (as text when it is printable, else as hex). */
static void print_response(const coapio_response *resp) {
    uint8_t code = 0;
    const uint8_t *buf = NULL;
    size_t len = 0;
    uint16_t cf = 0;
    coapio_response_code(resp, &code);
    coapio_response_payload(resp, &buf, &len);
    printf("%d.%02d %s", code >> 5, code & 31, coapio_code_name(code));
    if (coapio_response_content_format(resp, &cf) == COAPIO_RESULT_OK) {
        printf(" (Content-Format %u, %zu bytes)", (unsigned)cf, len);
    } else {
        printf(" (%zu bytes)", len);
    }
    printf("\n");
    bool text = true;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t') {
            text = false;
        }
    }
    if (len == 0) {
        return;
    }
    if (text) {
        printf("%.*s\n", (int)len, (const char *)buf);
    } else {
        for (size_t i = 0; i < len; i++) {
            printf("%02x%s", buf[i], i + 1 < len ? " " : "\n");
        }
    }
}

/* Called from inside coapio_context_run; the response is only valid during this call. */
static void on_get_response(void *userdata, coapio_result result, const coapio_response *resp) {
    struct get_outcome *out = userdata;
    out->done = true;
    out->result = result;
    if (result == COAPIO_RESULT_OK) {
        print_response(resp);
    }
    coapio_context_stop(out->ctx); /* makes coapio_context_run return */
}

/* One line on stderr: what failed, the result's name and the library's message. */
static int fail(const char *what, const char *uri, coapio_result res) {
    char msg[256] = "";
    size_t n = 0;
    coapio_last_error(msg, sizeof msg, &n);
    if (n > 0) {
        fprintf(stderr, "client: %s %s: %s (%s)\n", what, uri, coapio_result_str(res), msg);
    } else {
        fprintf(stderr, "client: %s %s: %s\n", what, uri, coapio_result_str(res));
    }
    return 1;
}

static int get(coapio_context *ctx, const char *uri) {
    coapio_request *req = NULL;
    coapio_result res = coapio_request_new(COAPIO_METHOD_GET, uri, &req);
    if (res != COAPIO_RESULT_OK) {
        return fail("GET", uri, res);
    }
    coapio_request_set_timeout_ms(req, TIMEOUT_MS);
    printf("GET %s\n", uri);
    struct get_outcome out = {ctx, false, COAPIO_RESULT_OK};
    res = coapio_context_send(ctx, req, on_get_response, &out, NULL); /* req is consumed */
    if (res != COAPIO_RESULT_OK) {
        return fail("GET", uri, res);
    }
    /* The callback stops the loop; the limit is only a safety net. */
    res = coapio_context_run(ctx, TIMEOUT_MS + 1000);
    if (res != COAPIO_RESULT_OK) {
        return fail("GET", uri, res);
    }
    if (!out.done) {
        fprintf(stderr, "client: GET %s: no outcome within %d ms\n", uri, TIMEOUT_MS + 1000);
        return 1;
    }
    if (out.result != COAPIO_RESULT_OK) {
        fprintf(stderr, "client: GET %s: %s\n", uri, coapio_result_str(out.result));
        return 1;
    }
    return 0;
}

static int put(coapio_context *ctx, const char *uri, const char *payload) {
    coapio_request *req = NULL;
    coapio_result res = coapio_request_new(COAPIO_METHOD_PUT, uri, &req);
    if (res != COAPIO_RESULT_OK) {
        return fail("PUT", uri, res);
    }
    coapio_request_set_payload(req, (const uint8_t *)payload, strlen(payload));
    coapio_request_add_option_uint(req, COAPIO_OPTION_CONTENT_FORMAT, COAPIO_FORMAT_TEXT_PLAIN);
    printf("PUT %s with payload \"%s\"\n", uri, payload);
    coapio_response *resp = NULL;
    res = coapio_request_sync(ctx, req, TIMEOUT_MS, &resp); /* req is consumed */
    if (res != COAPIO_RESULT_OK) {
        return fail("PUT", uri, res);
    }
    print_response(resp);
    coapio_response_free(resp); /* a response from coapio_request_sync is ours to free */
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || argv[1][0] == '-') {
        fprintf(stderr, "usage: client URI [PUT_PAYLOAD]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *uri = argv[1];

    coapio_context *ctx = NULL;
    coapio_result res = coapio_context_new(NULL, &ctx); /* a client on an ephemeral port */
    if (res != COAPIO_RESULT_OK) {
        return fail("open", "a socket", res);
    }
    int status = get(ctx, uri);
    if (status == 0 && argc == 3) {
        status = put(ctx, uri, argv[2]);
    }
    coapio_context_free(ctx);
    return status;
}
