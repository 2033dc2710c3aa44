#!/usr/bin/env python3
"""coapio in mode B under Python's asyncio, through ctypes.

    python3 asyncio_embed.py [PATH/TO/libcoapio.so]

Without an argument the library is looked for where `make -C examples-c` builds it
(../target/capi/release/libcoapio.so next to this script), then in ../target/debug.

Each coapio context gives asyncio one descriptor: `loop.add_reader(fd, process)` calls
`coapio_context_process` when the context has I/O or a deadline has passed, and a
`loop.call_later` re-armed from `coapio_context_next_timeout_ms` after every process serves
the timers. This is the add_reader mechanism aiocoap is built on, driving coapio instead.

A server context serves /hello (answered at once) and /slow (answered 300 ms later by an
asyncio timer: the library sends the empty ACK and then the separate response); a client
context in the same loop GETs both and prints the responses. Exit status 0 when both came.
"""

import asyncio
import ctypes
import os
import sys

OK = 0
METHOD_GET = 1
MASK_GET = 1 << 1

RESPONSE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
REQUEST_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def load(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = argv[1:2] or [
        os.path.join(here, "..", "target", "capi", "release", "libcoapio.so"),
        os.path.join(here, "..", "target", "debug", "libcoapio.so"),
    ]
    for path in candidates:
        if os.path.exists(path):
            return ctypes.CDLL(path), path
    sys.exit(f"asyncio_embed: libcoapio.so not found (tried {', '.join(candidates)}); "
             "build it with `make -C examples-c` or pass its path")


def declare(lib):
    """The prototypes this program uses, from include/coapio.h."""
    p, u32, u8, sz = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint8, ctypes.c_size_t
    pp = ctypes.POINTER(ctypes.c_void_p)
    protos = {
        "coapio_result_str": (ctypes.c_char_p, [u32]),
        "coapio_code_name": (ctypes.c_char_p, [u8]),
        "coapio_config_new": (u32, [pp]),
        "coapio_config_set_bind": (u32, [p, ctypes.c_char_p]),
        "coapio_config_free": (None, [p]),
        "coapio_context_new": (u32, [p, pp]),
        "coapio_context_free": (None, [p]),
        "coapio_context_get_fd": (ctypes.c_int32, [p]),
        "coapio_context_next_timeout_ms": (ctypes.c_int64, [p]),
        "coapio_context_process": (u32, [p]),
        "coapio_context_local_port": (u32, [p, ctypes.POINTER(ctypes.c_uint16)]),
        "coapio_context_add_resource": (u32, [p, ctypes.c_char_p, u32, REQUEST_CB, p]),
        "coapio_incoming_path": (u32, [p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(sz)]),
        "coapio_responder_respond": (u32, [p, u8, ctypes.c_char_p, sz, ctypes.c_int32]),
        "coapio_request_new": (u32, [u32, ctypes.c_char_p, pp]),
        "coapio_context_send": (u32, [p, p, RESPONSE_CB, p, ctypes.POINTER(ctypes.c_uint64)]),
        "coapio_response_code": (u32, [p, ctypes.POINTER(u8)]),
        "coapio_response_payload": (u32, [p, pp, ctypes.POINTER(sz)]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


class Driven:
    """A coapio context driven by an asyncio loop: a reader on its fd and one timer."""

    def __init__(self, lib, loop, ctx, name):
        self.lib, self.loop, self.ctx, self.name = lib, loop, ctx, name
        self.timer = None
        self.fd = lib.coapio_context_get_fd(ctx)
        loop.add_reader(self.fd, self.process)
        self.rearm()

    def process(self):
        res = self.lib.coapio_context_process(self.ctx)
        if res != OK:
            print(f"{self.name}: process: {self.lib.coapio_result_str(res).decode()}")
        self.rearm()

    def rearm(self):
        """Schedules process() for the context's next deadline (call after every call that
        may have set one: process, send)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ms = self.lib.coapio_context_next_timeout_ms(self.ctx)
        if ms >= 0:
            self.timer = self.loop.call_later(ms / 1000, self.process)

    def close(self):
        self.loop.remove_reader(self.fd)
        if self.timer is not None:
            self.timer.cancel()
        self.lib.coapio_context_free(self.ctx)
        self.ctx = None


async def main(lib, path):
    loop = asyncio.get_running_loop()

    # ---- the server ----
    cfg, srv = ctypes.c_void_p(), ctypes.c_void_p()
    assert lib.coapio_config_new(ctypes.byref(cfg)) == OK
    assert lib.coapio_config_set_bind(cfg, b"[::1]:0") == OK
    assert lib.coapio_context_new(cfg, ctypes.byref(srv)) == OK
    lib.coapio_config_free(cfg)

    def respond(responder, text):
        data = text.encode()
        lib.coapio_responder_respond(responder, 0x45, data, len(data), 0)

    def on_request(userdata, request, responder):
        # Called from inside coapio_context_process; `request` is valid during this call,
        # `responder` is ours until answered.
        p, n = ctypes.c_char_p(), ctypes.c_size_t()
        lib.coapio_incoming_path(request, ctypes.byref(p), ctypes.byref(n))
        rpath = p.value.decode()
        if rpath == "/slow":
            print("server: GET /slow, asyncio will answer in 300 ms")
            loop.call_later(0.3, respond, responder, "Answered by an asyncio timer")
        else:
            print(f"server: GET {rpath}, answering at once")
            respond(responder, "Hello from asyncio")

    on_request_c = REQUEST_CB(on_request)  # kept alive as long as the context
    for rpath in (b"/hello", b"/slow"):
        assert lib.coapio_context_add_resource(srv, rpath, MASK_GET, on_request_c, None) == OK
    port = ctypes.c_uint16()
    lib.coapio_context_local_port(srv, ctypes.byref(port))
    print(f"loaded {os.path.basename(path)}; server on [::1]:{port.value}; "
          "both contexts are driven by asyncio (add_reader + call_later)")

    # ---- the client ----
    cli = ctypes.c_void_p()
    assert lib.coapio_context_new(None, ctypes.byref(cli)) == OK
    server, client = Driven(lib, loop, srv, "server"), Driven(lib, loop, cli, "client")

    pending = {}

    def on_response(userdata, result, response):
        fut = pending.pop(userdata)
        if result != OK:
            fut.set_exception(RuntimeError(lib.coapio_result_str(result).decode()))
            return
        code, buf, n = ctypes.c_uint8(), ctypes.c_void_p(), ctypes.c_size_t()
        lib.coapio_response_code(response, ctypes.byref(code))
        lib.coapio_response_payload(response, ctypes.byref(buf), ctypes.byref(n))
        # The response is borrowed: copy what is kept before returning.
        payload = ctypes.string_at(buf, n.value) if n.value else b""
        fut.set_result((code.value, payload))

    on_response_c = RESPONSE_CB(on_response)  # kept alive while requests are open

    async def get(rpath, key):
        req = ctypes.c_void_p()
        uri = f"coap://[::1]:{port.value}{rpath}".encode()
        assert lib.coapio_request_new(METHOD_GET, uri, ctypes.byref(req)) == OK
        fut = loop.create_future()
        pending[key] = fut
        print(f"client: GET {rpath}")
        assert lib.coapio_context_send(cli, req, on_response_c, key, None) == OK
        client.rearm()  # sending set a retransmission deadline
        code, payload = await asyncio.wait_for(fut, 10)
        name = lib.coapio_code_name(code).decode()
        print(f'client: GET {rpath} -> {code >> 5}.{code & 31:02d} {name} "{payload.decode()}"')

    try:
        await asyncio.gather(get("/hello", 1), get("/slow", 2))
        print("both responses came through asyncio")
        return 0
    except (RuntimeError, asyncio.TimeoutError) as e:
        print(f"asyncio_embed: a request failed: {e!r}", file=sys.stderr)
        return 1
    finally:
        client.close()
        server.close()


if __name__ == "__main__":
    lib, path = load(sys.argv)
    declare(lib)
    sys.exit(asyncio.run(main(lib, path)))
