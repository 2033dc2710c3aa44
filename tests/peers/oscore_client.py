#!/usr/bin/env python3
"""An aiocoap OSCORE client (RFC 8613) for coapio's OSCORE tests: runs one request
against a server over OSCORE and prints what comes back.

Usage: python3 oscore_client.py CTXDIR METHOD URI [PAYLOAD] [--observe N] [-v]

CTXDIR is an aiocoap FilesystemSecurityContext directory holding the *client's* side
(e.g. a copy of tests/peers/oscore-ctx/client/); aiocoap writes sequence.json and a
lock file into it (so keep using the same copy for several runs against one server
process, or the server sees replayed sequence numbers). METHOD is GET, PUT, POST,
DELETE, FETCH, ... URI is like coap://127.0.0.1:5690/hello.

Output, one line per response: "<code> <payload>", e.g. "2.05 Hello, OSCORE" (the
inner, decrypted code). If the server answers without OSCORE, the line is
"unprotected <code> <payload>" (e.g. "unprotected 4.01 Replay detected") and the
exit status 1; other failures print "error <exception>".
With --observe N, each response line is "<code> <observe> <payload>" and the client
stops after N responses (the first one included).

Exit status: 0 if every response was 2.xx, 1 on an error response or error,
2 on a timeout (10 s).

aiocoap's client does inner block-wise itself (1024-byte blocks inside OSCORE),
and answers a protected 4.01 carrying an inner Echo option once, by sending the
request again (new sequence number) with that Echo value (RFC 8613 B.1.2 recovery).
"""

import argparse
import asyncio
import gc
import logging
import sys
from urllib.parse import urlsplit

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.oscore import NotAProtectedMessage


def line(response, observe=False):
    payload = response.payload.decode("utf-8", "replace")
    if observe:
        return f"{response.code.dotted} {response.opt.observe} {payload}"
    return f"{response.code.dotted} {payload}"


async def run(ctxdir, method, uri, payload, observe):
    ctx = await aiocoap.Context.create_client_context()
    parts = urlsplit(uri)
    ctx.client_credentials.load_from_dict(
        {f"{parts.scheme}://{parts.netloc}/*": {"oscore": {"basedir": ctxdir}}}
    )
    ok = True
    try:
        msg = aiocoap.Message(code=Code[method.upper()], uri=uri, payload=payload)
        if observe:
            msg.opt.observe = 0
        request = ctx.request(msg)
        first = await request.response
        print(line(first, bool(observe)), flush=True)
        ok = first.code.is_successful()
        if observe and ok:
            seen = 1
            if seen < observe:
                async for note in request.observation:
                    print(line(note, True), flush=True)
                    ok = ok and note.code.is_successful()
                    seen += 1
                    if seen >= observe:
                        break
            request.observation.cancel()
    finally:
        await ctx.shutdown()
        # Drop the security context so that it writes its final sequence.json
        # (FilesystemSecurityContext persists on destruction) and unlocks.
        ctx.client_credentials.clear()
        del ctx
        gc.collect()
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ctxdir")
    parser.add_argument("method")
    parser.add_argument("uri")
    parser.add_argument("payload", nargs="?", default="")
    parser.add_argument("--observe", type=int, default=0, metavar="N")
    parser.add_argument("-v", action="store_true")
    a = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if a.v:
        logging.getLogger("coap").setLevel(logging.DEBUG)
    ctxdir, method, uri, payload, observe = a.ctxdir, a.method, a.uri, a.payload.encode(), a.observe
    try:
        return asyncio.run(asyncio.wait_for(run(ctxdir, method, uri, payload, observe), 10))
    except asyncio.TimeoutError:
        print("timed out", flush=True)
        return 2
    except NotAProtectedMessage as e:
        # The server answered without OSCORE (e.g. 4.01 "Replay detected", 4.01
        # "Security context not found", 4.00 "Decryption failed", 4.02 "Failed to
        # decode COSE", or a server that does not do OSCORE at all)
        m = e.plain_message
        print(f"unprotected {m.code.dotted} {m.payload.decode('utf-8', 'replace')}", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 -- report any failure as a line and exit 1
        print(f"error {type(e).__name__}: {e}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
