"""The codec benchmark of benches/codec.rs, done with aiocoap (Python), for comparison.

Usage: python3 aiocoap_codec.py GET_HEX RESPONSE_HEX
  The two datagrams as printed by `cargo bench --bench codec -- --print-cases`;
  benches/peers/run.sh passes them. The script checks that aiocoap decodes them to the
  expected fields and encodes the same messages to the very same bytes, then times four cases:

  decode_get, decode_response
      aiocoap.Message.decode(bytes), then the type, code, message ID and token, every option
      (number and value, already converted to str/int/bytes by the decoder) and the payload.
  encode_get, encode_response
      msg.encode() of a Message built once beforehand (it returns a new bytes object).

Timing: timeit; a warm-up sizes N so that one sample takes ~75 ms, then 15 samples of N
iterations; median and minimum ns/op. Heap allocations are not counted (allocs/op n/a): every
Python object is one.

Output: one line per case, `aiocoap/<case>  median <ns> ns  min <ns> ns  allocs/op n/a`,
preceded by a `# aiocoap <version>, Python <version>` line.
"""

import platform
import statistics
import sys
import timeit

try:
    import aiocoap
    import aiocoap.meta
    from aiocoap import ACK, CON, CONTENT, GET, Message
except ImportError:
    sys.exit("aiocoap_codec.py: aiocoap is not installed (pip install aiocoap)")

MESSAGE_ID = 0x1234
TOKEN = bytes.fromhex("deadbeef")
ETAG = bytes.fromhex("5e7a9c21")
CONTENT_FORMAT = 42  # application/octet-stream
MAX_AGE = 60
PAYLOAD = bytes(i % 256 for i in range(1024))

SAMPLES = 15
SAMPLE_TARGET_S = 0.075


def get_message():
    m = Message(code=GET, uri_path=("sensors", "temperature"), uri_query=("unit=C",))
    m.mtype, m.mid, m.token = CON, MESSAGE_ID, TOKEN
    return m


def response_message():
    m = Message(
        code=CONTENT,
        payload=PAYLOAD,
        etag=ETAG,
        content_format=CONTENT_FORMAT,
        max_age=MAX_AGE,
    )
    m.mtype, m.mid, m.token = ACK, MESSAGE_ID, TOKEN
    return m


def decode_and_touch(data):
    """Decodes and reads every field and option, as the Rust case does."""
    m = Message.decode(data)
    acc = int(m.mtype) + int(m.code) + m.mid + len(m.token)
    for opt in m.opt.option_list():
        acc += int(opt.number)
        opt.value
    return acc + len(m.payload)


def check(get, response):
    for name, msg, want in (("GET", get_message(), get), ("response", response_message(), response)):
        got = msg.encode()
        if got != want:
            sys.exit(f"aiocoap_codec.py: aiocoap encodes a different {name}:\n  got  {got.hex()}\n  want {want.hex()}")
    m = Message.decode(get)
    assert (m.mtype, m.code, m.mid, m.token) == (CON, GET, MESSAGE_ID, TOKEN)
    assert m.opt.uri_path == ("sensors", "temperature") and m.opt.uri_query == ("unit=C",)
    assert m.payload == b""
    m = Message.decode(response)
    assert (m.mtype, m.code, m.mid, m.token) == (ACK, CONTENT, MESSAGE_ID, TOKEN)
    assert m.opt.etag == ETAG and int(m.opt.content_format) == CONTENT_FORMAT
    assert m.opt.max_age == MAX_AGE and m.payload == PAYLOAD


def bench(name, op):
    timer = timeit.Timer(op)
    iters, elapsed = timer.autorange()  # also the warm-up (>= 0.2 s)
    iters = max(1, int(SAMPLE_TARGET_S / (elapsed / iters)))
    ns = sorted(t * 1e9 / iters for t in timer.repeat(repeat=SAMPLES, number=iters))
    print(f"aiocoap/{name}  median {statistics.median(ns):.1f} ns  min {ns[0]:.1f} ns  allocs/op n/a", flush=True)


def main():
    if len(sys.argv) != 3:
        sys.exit(
            "usage: aiocoap_codec.py GET_HEX RESPONSE_HEX\n"
            "  (the hex of `cargo bench --bench codec -- --print-cases`)"
        )
    get, response = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
    check(get, response)
    print(f"# aiocoap {aiocoap.meta.version}, Python {platform.python_version()} ({platform.python_implementation()})", flush=True)

    bench("decode_get", lambda: decode_and_touch(get))
    msg = get_message()
    bench("encode_get", msg.encode)
    bench("decode_response", lambda: decode_and_touch(response))
    msg = response_message()
    bench("encode_response", msg.encode)


if __name__ == "__main__":
    main()
