#!/usr/bin/env python3
"""A plain-CoAP aiocoap server that challenges clients with 4.01 + Echo (RFC 9175), for
testing that a client answers an Echo challenge by repeating its request with the
Echo value. aiocoap has no helper for this (it only uses Echo inside OSCORE, for
Appendix B.1.2 replay-window recovery), so the challenges are done by hand here.

Usage: python3 echo_server.py HOST PORT [--echo-len N] [-v]

Resources:
  /fresh     GET: 2.05 "fresh"; PUT, POST: 2.04 echoing the payload -- but only if the
             request carries an Echo value this server issued in the last 10 s;
             otherwise 4.01 Unauthorized, Max-Age 0, with a new Echo option (N random
             bytes, N = --echo-len, default 8, 1..40) and an empty payload.
             (Freshness, RFC 9175 section 2.3 / 3.) With a Block1 body, only the
             last block is challenged (the earlier ones get 2.31 Continue; repeat the
             last block with the Echo); later Block2 requests are not challenged.
  /verified  GET: 2.05 "verified" once the client's endpoint (address and port) has
             returned any valid Echo value; until then 4.01 + Echo as above
             (address verification / amplification mitigation, RFC 9175 section 2.4).
  /hello     GET: 2.05 "hello" -- never challenged.
  /stats     GET: 2.05 "challenges=<number of 4.01+Echo sent> accepted=<number of
             requests accepted with an Echo>" -- never challenged.

Prints "ready" on stdout once it listens; runs until it is killed. With -v, aiocoap's
message log goes to stderr.
"""

import asyncio
import logging
import secrets
import sys
import time

import aiocoap
import aiocoap.resource as resource

FRESHNESS = 10.0  # seconds an issued Echo value stays acceptable


class Challenger:
    def __init__(self, echo_len):
        self.echo_len = echo_len
        self.issued = {}  # echo value -> time issued
        self.verified = set()  # endpoints (hostinfo) that returned a valid Echo
        self.challenges = 0
        self.accepted = 0

    def valid(self, echo):
        now = time.monotonic()
        for value, t in list(self.issued.items()):
            if now - t > FRESHNESS:
                del self.issued[value]
        return echo is not None and echo in self.issued

    def challenge(self):
        echo = secrets.token_bytes(self.echo_len)
        self.issued[echo] = time.monotonic()
        self.challenges += 1
        return aiocoap.Message(code=aiocoap.UNAUTHORIZED, echo=echo, max_age=0)


class Fresh(resource.Resource):
    def __init__(self, challenger):
        super().__init__()
        self.ch = challenger

    async def render_to_pipe(self, pipe):
        req = pipe.request
        final_block1 = req.opt.block1 is None or not req.opt.block1.more
        first_block2 = req.opt.block2 is None or req.opt.block2.block_number == 0
        if final_block1 and first_block2:
            if not self.ch.valid(req.opt.echo):
                pipe.add_response(self.ch.challenge(), is_last=True)
                return
            self.ch.accepted += 1
        await super().render_to_pipe(pipe)

    async def render_get(self, request):
        return aiocoap.Message(payload=b"fresh", content_format=0)

    async def render_put(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)

    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)


class Verified(resource.Resource):
    def __init__(self, challenger):
        super().__init__()
        self.ch = challenger

    async def render_get(self, request):
        who = request.remote.hostinfo
        if who not in self.ch.verified:
            if not self.ch.valid(request.opt.echo):
                return self.ch.challenge()
            self.ch.verified.add(who)
            self.ch.accepted += 1
        return aiocoap.Message(payload=b"verified", content_format=0)


class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"hello", content_format=0)


class Stats(resource.Resource):
    def __init__(self, challenger):
        super().__init__()
        self.ch = challenger

    async def render_get(self, request):
        text = f"challenges={self.ch.challenges} accepted={self.ch.accepted}"
        return aiocoap.Message(payload=text.encode(), content_format=0)


async def main(host, port, echo_len):
    ch = Challenger(echo_len)
    root = resource.Site()
    root.add_resource(["fresh"], Fresh(ch))
    root.add_resource(["verified"], Verified(ch))
    root.add_resource(["hello"], Hello())
    root.add_resource(["stats"], Stats(ch))
    await aiocoap.Context.create_server_context(root, bind=(host, port))
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    argv = sys.argv[1:]
    echo_len = 8
    if "--echo-len" in argv:
        i = argv.index("--echo-len")
        echo_len = int(argv[i + 1])
        del argv[i : i + 2]
        assert 1 <= echo_len <= 40, "Echo values are 1..40 bytes (RFC 9175)"
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if "-v" in argv:
        logging.getLogger("coap-server").setLevel(logging.DEBUG)
    args = [a for a in argv if not a.startswith("-")]
    asyncio.run(main(args[0], int(args[1]), echo_len))
