#!/usr/bin/env python3
"""An aiocoap server over DTLS (tinydtls, PSK) for coapio's tests (tests/interop_dtls.rs).

Usage: python3 aiocoap_dtls_server.py HOST PORT IDENTITY KEY

aiocoap's tinydtls server listens for coaps on PORT + 1. Resource: /hello (GET: 2.05
"Hello from aiocoap over DTLS"). Prints "ready" once it listens; runs until killed.
"""

import asyncio, sys, os
os.environ["AIOCOAP_SERVER_TRANSPORT"] = "tinydtls_server"
import aiocoap, aiocoap.resource as resource
from aiocoap.credentials import CredentialsMap

class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"Hello from aiocoap over DTLS", content_format=0)

async def main():
    host, port, identity, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    creds = CredentialsMap()
    creds.load_from_dict({":client": {"dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": identity}}}})
    ctx = await aiocoap.Context.create_server_context(site, bind=(host, port), server_credentials=creds)
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()

asyncio.run(main())
