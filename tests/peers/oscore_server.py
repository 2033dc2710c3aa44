#!/usr/bin/env python3
"""An aiocoap OSCORE server (RFC 8613) for coapio's OSCORE tests.

Usage: python3 oscore_server.py HOST PORT CTXDIR [--unprotected] [-v]

CTXDIR is an aiocoap FilesystemSecurityContext directory holding the *server's* side
(settings.json + secret.json; e.g. a copy of tests/peers/oscore-ctx/server/). aiocoap
writes sequence.json and a lock file into it, so hand it a temporary copy.

Every resource below answers only OSCORE-protected requests; an unprotected request
to one of them gets an unprotected 4.01 "OSCORE required". (aiocoap's
OscoreSiteWrapper itself passes unprotected requests through to the site unchanged;
the check is done here, on request.remote.authenticated_claims.)

  /hello   GET: 2.05 "Hello, OSCORE" (text/plain)
  /store   GET: 2.05 with the text last PUT (empty at start); PUT: 2.04 echoing the
           payload back, and stores it (aiocoap assembles an inner Block1 for it)
  /big     GET: 2.05, 3000 bytes "[0000][0001]...[0499]" (so it needs inner Block2;
           aiocoap serves 1024-byte blocks inside OSCORE)
  /obs     observable: "count N"; while observed, N goes up and a notification is
           sent every 200 ms
  /fresh   GET: without a (valid) inner Echo option: 4.01 with an inner Echo option
           (8 random bytes); with an Echo value this server issued: 2.05 "fresh"
           (an RFC 9175 freshness challenge inside OSCORE)

With --unprotected, also (no OSCORE needed):
  /plain/hello  GET: 2.05 "Hello, plain"

Server-side OSCORE behaviour worth knowing (aiocoap 0.4.17):
  * a replayed request (sequence number already seen) gets an *unprotected*
    4.01 Unauthorized, Max-Age 0, payload "Replay detected";
  * a request whose kid matches no context: 4.01 "Security context not found";
  * a request that fails to decrypt: 4.00 "Decryption failed";
  * if the process was killed (no clean shutdown) after receiving requests, the replay
    window is "unknown" on restart and the first protected request is answered with
    a *protected* 4.01 carrying an inner Echo (8 bytes, RFC 8613 Appendix B.1.2);
    the request repeated with that Echo (inner) is accepted.

Prints "ready" on stdout once it listens; runs until it is killed. With -v, aiocoap's
message log (and the OSCORE site log) goes to stderr.
"""

import asyncio
import logging
import secrets
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper


def oscore_only(render):
    """Decorator for render_* methods: unprotected requests get 4.01."""

    async def wrapped(self, request):
        if not request.remote.authenticated_claims:
            return aiocoap.Message(
                code=aiocoap.UNAUTHORIZED, payload=b"OSCORE required", content_format=0
            )
        return await render(self, request)

    return wrapped


class Hello(resource.Resource):
    @oscore_only
    async def render_get(self, request):
        return aiocoap.Message(payload=b"Hello, OSCORE", content_format=0)


class PlainHello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"Hello, plain", content_format=0)


class Store(resource.Resource):
    def __init__(self):
        super().__init__()
        self.content = b""

    @oscore_only
    async def render_get(self, request):
        return aiocoap.Message(payload=self.content, content_format=0)

    @oscore_only
    async def render_put(self, request):
        self.content = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload, content_format=0)


BIG = "".join(f"[{i:04d}]" for i in range(500)).encode()  # 3000 bytes


class Big(resource.Resource):
    @oscore_only
    async def render_get(self, request):
        return aiocoap.Message(payload=BIG, content_format=0)


class Obs(resource.ObservableResource):
    """A counter that goes up every 200 ms while somebody observes it."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.task = None

    def update_observation_count(self, count):
        if count and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.tick())
        elif count == 0 and self.task is not None:
            self.task.cancel()
            self.task = None

    async def tick(self):
        while True:
            await asyncio.sleep(0.2)
            self.count += 1
            self.updated_state()

    @oscore_only
    async def render_get(self, request):
        return aiocoap.Message(payload=f"count {self.count}".encode(), content_format=0)


class Fresh(resource.Resource):
    """4.01 + Echo unless the request carries an Echo value issued here."""

    def __init__(self):
        super().__init__()
        self.issued = set()

    @oscore_only
    async def render_get(self, request):
        if request.opt.echo is not None and request.opt.echo in self.issued:
            self.issued.discard(request.opt.echo)
            return aiocoap.Message(payload=b"fresh", content_format=0)
        echo = secrets.token_bytes(8)
        self.issued.add(echo)
        return aiocoap.Message(code=aiocoap.UNAUTHORIZED, echo=echo, max_age=0)


async def main(host, port, ctxdir, unprotected):
    root = resource.Site()
    root.add_resource(
        [".well-known", "core"], resource.WKCResource(root.get_resources_as_linkheader)
    )
    root.add_resource(["hello"], Hello())
    root.add_resource(["store"], Store())
    root.add_resource(["big"], Big())
    root.add_resource(["obs"], Obs())
    root.add_resource(["fresh"], Fresh())
    if unprotected:
        root.add_resource(["plain", "hello"], PlainHello())

    # The key (":client") is only a label; it becomes the request's
    # remote.authenticated_claims. "basedir" is the current name of the item
    # ("contextfile" still works but warns).
    creds = CredentialsMap()
    creds.load_from_dict({":client": {"oscore": {"basedir": ctxdir}}})
    site = OscoreSiteWrapper(root, creds)
    await aiocoap.Context.create_server_context(site, bind=(host, port), server_credentials=creds)
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    flags = [a for a in sys.argv[1:] if a.startswith("-")]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if "-v" in flags:
        logging.getLogger("coap-server").setLevel(logging.DEBUG)
    asyncio.run(main(args[0], int(args[1]), args[2], "--unprotected" in flags))
