#!/usr/bin/env python3
"""Replays an OSCORE-protected request, for "a replayed request is rejected" tests.

Usage:
  python3 oscore_replay.py CTXDIR HOST PORT PATH [--same-mid]
  python3 oscore_replay.py --hex DATAGRAM_HEX HOST PORT [--same-mid]

First form: protects "GET /PATH" with the client security context in CTXDIR (an aiocoap
FilesystemSecurityContext directory, e.g. a copy of tests/peers/oscore-ctx/client/;
its sequence.json is advanced as by any client), sends it as a CON datagram over UDP,
then sends the very same datagram bytes again -- with a new message ID, so that CoAP
message deduplication does not catch it and the OSCORE replay window has to.
With --same-mid the second copy keeps the message ID (a plain CoAP duplicate: the
server should answer from its deduplication cache, i.e. the same response again).

Second form: sends an already captured datagram (hex) twice, the same way; responses
can not be decrypted then, only their outer code and payload are shown.

Output (one line per answer):
  first <code> <payload>     the inner (decrypted) code and payload of the first answer,
                             or "first outer <code> <payload>" if it is not protected
                             ("first protected <outer code> <hex>" in the --hex form)
  replay <code> <payload>    likewise for the answer to the second copy; a server doing
                             replay protection answers an unprotected
                             "replay outer 4.01 Replay detected" (aiocoap's wording)

Exit status: 0 if the replay was answered with an unprotected 4.01 (without
--same-mid); with --same-mid, 0 if both answers are byte-identical datagrams;
1 otherwise; 2 if an answer did not come within 5 s.
"""

import os
import socket
import sys

import aiocoap
from aiocoap import oscore
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type


def exchange(sock, addr, data):
    """Send a CON datagram, return the (piggybacked or separate) response datagram."""
    sock.sendto(data, addr)
    mid = int.from_bytes(data[2:4], "big")
    while True:
        raw, _ = sock.recvfrom(65536)
        msg = aiocoap.Message.decode(raw)
        if msg.mtype == Type.ACK and msg.mid == mid and msg.code == Code.EMPTY:
            continue  # empty ACK, the response comes separately
        if msg.mtype == Type.CON:
            # acknowledge a separate response
            sock.sendto(aiocoap.Message(mtype=Type.ACK, mid=msg.mid, code=Code.EMPTY).encode(), addr)
        return raw, msg


def describe(label, msg, secctx, request_id):
    if msg.opt.oscore is not None and secctx is not None:
        try:
            inner, _ = secctx.unprotect(msg, request_id)
            return f"{label} {inner.code.dotted} {inner.payload.decode('utf-8', 'replace')}"
        except oscore.ProtectionInvalid as e:
            return f"{label} undecryptable {msg.code.dotted} ({e})"
    if msg.opt.oscore is not None:
        return f"{label} protected {msg.code.dotted} {msg.payload.hex()}"
    return f"{label} outer {msg.code.dotted} {msg.payload.decode('utf-8', 'replace')}"


def main(argv):
    same_mid = "--same-mid" in argv
    argv = [a for a in argv if a != "--same-mid"]
    secctx = request_id = None
    if argv[0] == "--hex":
        data = bytes.fromhex(argv[1])
        host, port = argv[2], int(argv[3])
    else:
        ctxdir, host, port, path = argv[0], argv[1], int(argv[2]), argv[3]
        secctx = oscore.FilesystemSecurityContext(ctxdir)
        plain = aiocoap.Message(code=Code.GET, uri_path=[p for p in path.split("/") if p])
        protected, request_id = secctx.protect(plain)
        protected.mtype = Type.CON
        protected.mid = int.from_bytes(os.urandom(2), "big")
        protected.token = os.urandom(4)
        data = protected.encode()

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    addr = (host, port)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(5)

    try:
        raw1, first = exchange(sock, addr, data)
        print(describe("first", first, secctx, request_id), flush=True)
        again = bytearray(data)
        if not same_mid:
            again[2:4] = ((int.from_bytes(data[2:4], "big") + 1) & 0xFFFF).to_bytes(2, "big")
        raw2, second = exchange(sock, addr, bytes(again))
        print(describe("replay", second, secctx, request_id), flush=True)
    except socket.timeout:
        print("timed out", flush=True)
        return 2

    if same_mid:
        return 0 if raw1 == raw2 else 1
    return 0 if (second.opt.oscore is None and second.code == Code.UNAUTHORIZED) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
