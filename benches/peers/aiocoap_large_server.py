"""An aiocoap server with one resource, /large: the same 1 MiB text as coapio's example server.

    python3 benches/peers/aiocoap_large_server.py HOST PORT
"""
import asyncio
import sys

import aiocoap
import aiocoap.resource as resource

LARGE = bytes((0x0A if i % 64 == 63 else 0x61 + i % 26) for i in range(1 << 20))


class Large(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=LARGE, content_format=0)


async def main(host, port):
    root = resource.Site()
    root.add_resource(["large"], Large())
    await aiocoap.Context.create_server_context(root, bind=(host, port))
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
