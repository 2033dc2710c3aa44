/*
 * The codec benchmark of benches/codec.rs, done with libcoap 3 (C), for comparison.
 *
 * Usage: libcoap_codec GET_HEX RESPONSE_HEX
 *   The two datagrams as printed by `cargo bench --bench codec -- --print-cases`;
 *   benches/peers/run.sh passes them. The program checks that libcoap parses them to the
 *   expected fields and that libcoap builds the very same bytes, then times four cases:
 *
 *   decode_get, decode_response
 *       coap_pdu_parse(COAP_PROTO_UDP, ...) into a PDU made once by coap_pdu_init and reused,
 *       then the type, code, message ID and token getters, an option iterator over every
 *       option (number + length) and coap_get_data: the same work the Rust case does.
 *       coap_pdu_parse copies the datagram into the PDU's own buffer and checks each known
 *       option's length against RFC 7252's table; libcoap's receive path (coap_handle_dgram)
 *       would also allocate a fresh PDU per datagram, which is not timed here.
 *   encode_get, encode_response
 *       coap_pdu_init + coap_add_token + coap_add_option (each) + coap_add_data, then
 *       coap_delete_pdu: libcoap's public way to build a message. libcoap writes the 4-byte
 *       header only when it sends (coap_pdu_encode_header, internal); that is not timed.
 *
 * Timing: clock_gettime(CLOCK_MONOTONIC); ~100 ms warm-up, then 15 samples of N iterations
 * (~75 ms each); median and minimum ns/op. Heap allocations are counted by replacing
 * malloc/calloc/realloc/free with wrappers around glibc's __libc_* functions (glibc only).
 *
 * Output: one line per case, `libcoap/<case>  median <ns> ns  min <ns> ns  allocs/op <n>`,
 * preceded by a `# libcoap <version>` line.
 */
#define _POSIX_C_SOURCE 200809L

#include <coap3/coap.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- allocation counting (glibc: the executable's malloc interposes libcoap's) ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static unsigned long long allocations;

void *malloc(size_t n) { allocations++; return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { allocations++; return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { allocations++; return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }

/* ---- the cases (the field values of benches/codec.rs) ---- */

#define MESSAGE_ID 0x1234
static const uint8_t TOKEN[4] = {0xde, 0xad, 0xbe, 0xef};
static const uint8_t ETAG[4] = {0x5e, 0x7a, 0x9c, 0x21};
#define CONTENT_FORMAT 42 /* application/octet-stream */
#define MAX_AGE 60
#define PAYLOAD_LEN 1024

static uint8_t payload[PAYLOAD_LEN];
static uint8_t cf_value[4], max_age_value[4];
static size_t cf_len, max_age_len;

/* Keeps a value alive without letting the compiler see what becomes of it. */
static inline void sink(const void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }
static volatile size_t sink_acc;

static void die(const char *what) {
  fprintf(stderr, "libcoap_codec: %s\n", what);
  exit(1);
}

static size_t from_hex(const char *hex, uint8_t **out) {
  size_t n = strlen(hex);
  if (n % 2) die("odd-length hex");
  *out = __libc_malloc(n / 2);
  if (!*out) die("out of memory");
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) die("bad hex");
    (*out)[i] = (uint8_t)v;
  }
  return n / 2;
}

static coap_pdu_t *build_get(void) {
  coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, MESSAGE_ID,
                                  COAP_DEFAULT_MTU);
  if (!pdu || !coap_add_token(pdu, sizeof TOKEN, TOKEN) ||
      !coap_add_option(pdu, COAP_OPTION_URI_PATH, 7, (const uint8_t *)"sensors") ||
      !coap_add_option(pdu, COAP_OPTION_URI_PATH, 11, (const uint8_t *)"temperature") ||
      !coap_add_option(pdu, COAP_OPTION_URI_QUERY, 6, (const uint8_t *)"unit=C"))
    die("building the GET failed");
  return pdu;
}

static coap_pdu_t *build_response(void) {
  coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_ACK, COAP_RESPONSE_CODE_CONTENT, MESSAGE_ID,
                                  COAP_DEFAULT_MTU);
  if (!pdu || !coap_add_token(pdu, sizeof TOKEN, TOKEN) ||
      !coap_add_option(pdu, COAP_OPTION_ETAG, sizeof ETAG, ETAG) ||
      !coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT, cf_len, cf_value) ||
      !coap_add_option(pdu, COAP_OPTION_MAXAGE, max_age_len, max_age_value) ||
      !coap_add_data(pdu, PAYLOAD_LEN, payload))
    die("building the response failed");
  return pdu;
}

/* The decode work: parse, then read every field and option, as the Rust case does. */
static size_t decode_and_touch(coap_pdu_t *pdu, const uint8_t *data, size_t len) {
  if (!coap_pdu_parse(COAP_PROTO_UDP, data, len, pdu)) die("coap_pdu_parse failed");
  size_t acc = (size_t)coap_pdu_get_type(pdu) + (size_t)coap_pdu_get_code(pdu) +
               (size_t)coap_pdu_get_mid(pdu) + coap_pdu_get_token(pdu).length;
  coap_opt_iterator_t oi;
  coap_opt_t *opt;
  if (coap_option_iterator_init(pdu, &oi, COAP_OPT_ALL)) {
    while ((opt = coap_option_next(&oi)))
      acc += oi.number + coap_opt_length(opt);
  }
  size_t plen = 0;
  const uint8_t *pdata;
  if (coap_get_data(pdu, &plen, &pdata)) acc += plen;
  return acc;
}

/*
 * The wire form of a PDU built with the public API. libcoap keeps token, options and payload
 * contiguous in wire form from coap_pdu_get_token().s on and writes the 4-byte header when it
 * sends (coap_pdu_encode_header: version 1, type, token length, code, message ID); that header
 * is rebuilt here from the public getters in the same way.
 */
static size_t wire_form(const coap_pdu_t *pdu, uint8_t *out, size_t cap) {
  coap_bin_const_t tok = coap_pdu_get_token(pdu);
  const uint8_t *end = tok.s + tok.length;
  coap_opt_iterator_t oi;
  coap_opt_t *opt;
  if (coap_option_iterator_init(pdu, &oi, COAP_OPT_ALL)) {
    while ((opt = coap_option_next(&oi))) end = opt + coap_opt_size(opt);
  }
  size_t plen;
  const uint8_t *pdata;
  if (coap_get_data(pdu, &plen, &pdata)) {
    if (pdata != end + 1 || end[0] != 0xff) die("payload not where expected");
    end = pdata + plen;
  }
  size_t body = (size_t)(end - tok.s);
  if (4 + body > cap) die("wire form too long");
  int mid = coap_pdu_get_mid(pdu);
  out[0] = (uint8_t)(1 << 6 | coap_pdu_get_type(pdu) << 4 | tok.length);
  out[1] = (uint8_t)coap_pdu_get_code(pdu);
  out[2] = (uint8_t)(mid >> 8);
  out[3] = (uint8_t)mid;
  memcpy(out + 4, tok.s, body);
  return 4 + body;
}

static void check_encoding(const char *name, coap_pdu_t *pdu, const uint8_t *want, size_t n) {
  uint8_t got[2048];
  size_t len = wire_form(pdu, got, sizeof got);
  if (len != n || memcmp(got, want, n) != 0) {
    fprintf(stderr, "libcoap_codec: libcoap builds a different %s:\n  got  ", name);
    for (size_t i = 0; i < len; i++) fprintf(stderr, "%02x", got[i]);
    fprintf(stderr, "\n  want ");
    for (size_t i = 0; i < n; i++) fprintf(stderr, "%02x", want[i]);
    fprintf(stderr, "\n");
    exit(1);
  }
}

static void check_decoding(const uint8_t *data, size_t len, coap_pdu_type_t ty,
                           coap_pdu_code_t code, int options, size_t payload_len) {
  coap_pdu_t *pdu = coap_pdu_init(0, 0, 0, COAP_DEFAULT_MTU);
  if (!pdu || !coap_pdu_parse(COAP_PROTO_UDP, data, len, pdu)) die("parse failed");
  coap_bin_const_t tok = coap_pdu_get_token(pdu);
  if (coap_pdu_get_type(pdu) != ty || coap_pdu_get_code(pdu) != code ||
      coap_pdu_get_mid(pdu) != MESSAGE_ID || tok.length != sizeof TOKEN ||
      memcmp(tok.s, TOKEN, sizeof TOKEN) != 0)
    die("parsed header differs");
  coap_opt_iterator_t oi;
  int count = 0;
  if (coap_option_iterator_init(pdu, &oi, COAP_OPT_ALL))
    while (coap_option_next(&oi)) count++;
  size_t plen = 0;
  const uint8_t *pdata;
  coap_get_data(pdu, &plen, &pdata);
  if (count != options || plen != payload_len) die("parsed options or payload differ");
  coap_delete_pdu(pdu);
}

/* ---- the harness ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

enum { SAMPLES = 15 };

typedef void (*op_fn)(void *);

static void bench(const char *name, op_fn op, void *ctx) {
  double start = now_s();
  unsigned long long warm = 0;
  while (now_s() - start < 0.1) {
    for (int i = 0; i < 100; i++) op(ctx);
    warm += 100;
  }
  double per_iter = (now_s() - start) / (double)warm;
  unsigned long long iters = (unsigned long long)(0.075 / per_iter);
  if (iters == 0) iters = 1;

  unsigned long long before = allocations;
  for (unsigned long long i = 0; i < iters; i++) op(ctx);
  unsigned long long allocs = allocations - before;

  double ns[SAMPLES];
  for (int s = 0; s < SAMPLES; s++) {
    double t = now_s();
    for (unsigned long long i = 0; i < iters; i++) op(ctx);
    ns[s] = (now_s() - t) * 1e9 / (double)iters;
  }
  qsort(ns, SAMPLES, sizeof ns[0], cmp_double);
  char allocs_str[32];
  if (allocs % iters == 0)
    snprintf(allocs_str, sizeof allocs_str, "%llu", allocs / iters);
  else
    snprintf(allocs_str, sizeof allocs_str, "%.3f", (double)allocs / (double)iters);
  printf("libcoap/%s  median %.1f ns  min %.1f ns  allocs/op %s\n", name, ns[SAMPLES / 2],
         ns[0], allocs_str);
  fflush(stdout);
}

struct decode_ctx {
  coap_pdu_t *pdu;
  const uint8_t *data;
  size_t len;
};

static void op_decode(void *p) {
  struct decode_ctx *c = p;
  sink_acc = decode_and_touch(c->pdu, c->data, c->len);
}

static void op_encode_get(void *p) {
  (void)p;
  coap_pdu_t *pdu = build_get();
  sink(pdu);
  coap_delete_pdu(pdu);
}

static void op_encode_response(void *p) {
  (void)p;
  coap_pdu_t *pdu = build_response();
  sink(pdu);
  coap_delete_pdu(pdu);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s GET_HEX RESPONSE_HEX\n"
                    "  (the hex of `cargo bench --bench codec -- --print-cases`)\n",
            argv[0]);
    return 2;
  }
  coap_startup();
  coap_set_log_level(LOG_WARNING);

  for (int i = 0; i < PAYLOAD_LEN; i++) payload[i] = (uint8_t)i;
  cf_len = coap_encode_var_safe(cf_value, sizeof cf_value, CONTENT_FORMAT);
  max_age_len = coap_encode_var_safe(max_age_value, sizeof max_age_value, MAX_AGE);

  uint8_t *get, *response;
  size_t get_len = from_hex(argv[1], &get);
  size_t response_len = from_hex(argv[2], &response);

  check_decoding(get, get_len, COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, 3, 0);
  check_decoding(response, response_len, COAP_MESSAGE_ACK, COAP_RESPONSE_CODE_CONTENT, 3,
                 PAYLOAD_LEN);
  coap_pdu_t *pdu = build_get();
  check_encoding("GET", pdu, get, get_len);
  coap_delete_pdu(pdu);
  pdu = build_response();
  check_encoding("response", pdu, response, response_len);
  coap_delete_pdu(pdu);

  printf("# %s\n", coap_package_version()); /* "libcoap 4.3.1" */
  fflush(stdout);

  struct decode_ctx dget = {coap_pdu_init(0, 0, 0, COAP_DEFAULT_MTU), get, get_len};
  struct decode_ctx dresp = {coap_pdu_init(0, 0, 0, COAP_DEFAULT_MTU), response, response_len};
  if (!dget.pdu || !dresp.pdu) die("coap_pdu_init failed");

  bench("decode_get", op_decode, &dget);
  bench("encode_get", op_encode_get, NULL);
  bench("decode_response", op_decode, &dresp);
  bench("encode_response", op_encode_response, NULL);

  coap_delete_pdu(dget.pdu);
  coap_delete_pdu(dresp.pdu);
  coap_cleanup();
  return 0;
}
