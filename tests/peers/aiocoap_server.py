#!/usr/bin/env python3
"""An aiocoap server for coapio's interoperability tests (tests/interop_aiocoap.rs).

Usage: python3 aiocoap_server.py HOST PORT [-v]

Resources:
  /hello   GET: 2.05 "Hello from aiocoap" (text/plain)
  /echo    PUT, POST: 2.04 with the request's payload
  /item    DELETE: 2.02
  /slow    GET: 2.05 "slow and steady" after 0.5 s, so a Confirmable request gets an empty ACK
           first and the answer comes as a separate response

Prints "ready" on stdout once it listens; runs until it is killed. With -v, aiocoap's
message log (every message sent and received) goes to stderr.
"""

import asyncio
import logging
import sys

import aiocoap
import aiocoap.resource as resource


class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"Hello from aiocoap", content_format=0)


class Echo(resource.Resource):
    async def render_put(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)

    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)


class Item(resource.Resource):
    async def render_delete(self, request):
        return aiocoap.Message(code=aiocoap.DELETED)


class Slow(resource.Resource):
    async def render_get(self, request):
        await asyncio.sleep(0.5)
        return aiocoap.Message(payload=b"slow and steady", content_format=0)


class Clock(resource.ObservableResource):
    """Observable: a counter that goes up every 300 ms and notifies its observers."""

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
            await asyncio.sleep(0.3)
            self.count += 1
            self.updated_state()

    async def render_get(self, request):
        return aiocoap.Message(payload=f"tick {self.count}".encode())


async def main(host, port):
    root = resource.Site()
    root.add_resource(
        [".well-known", "core"], resource.WKCResource(root.get_resources_as_linkheader)
    )
    root.add_resource(["hello"], Hello())
    root.add_resource(["echo"], Echo())
    root.add_resource(["item"], Item())
    root.add_resource(["slow"], Slow())
    root.add_resource(["clock"], Clock())
    await aiocoap.Context.create_server_context(root, bind=(host, port))
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if "-v" in sys.argv[3:]:
        # aiocoap logs a server context's messages as "coap-server".
        logging.getLogger("coap-server").setLevel(logging.DEBUG)
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
