"""Observes a CoAP resource with aiocoap and prints each representation on a line of its own,
until COUNT have arrived (exit 0) or 10 s have passed (exit 1).

    python3 tests/peers/aiocoap_observe.py URI COUNT
"""
import asyncio
import sys

import aiocoap


async def main(uri, count):
    ctx = await aiocoap.Context.create_client_context()
    request = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0))
    seen = 0
    first = await request.response
    print(f"{first.code} {first.opt.observe} {first.payload.decode()}", flush=True)
    seen += 1
    async for note in request.observation:
        print(f"{note.code} {note.opt.observe} {note.payload.decode()}", flush=True)
        seen += 1
        if seen >= count:
            request.observation.cancel()
            break
    await ctx.shutdown()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2])), 10)))
    except asyncio.TimeoutError:
        print("timed out", flush=True)
        sys.exit(1)
