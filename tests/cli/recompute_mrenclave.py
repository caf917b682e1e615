#!/usr/bin/env python3
"""Recomputes MRENCLAVE from `teemate inspect --json` with nothing but
hashlib, as docs/enclave-image.md describes, and prints it. Exits 1 if it
differs from the "mrenclave" the tool printed. Reads the JSON on stdin."""
import base64
import hashlib
import json
import struct
import sys


def main():
    j = json.load(sys.stdin)
    h = hashlib.sha256()
    # ECREATE: "ECREATE\0", SSAFRAMESIZE (u32), SIZE (u64), 44 zero bytes.
    h.update(b"ECREATE\0" + struct.pack("<IQ", j["ssaframesize"], j["size"]) + bytes(44))
    for p in j["pages"]:
        # EADD: "EADD\0\0\0\0", offset (u64), the first 48 bytes of SECINFO.
        h.update(b"EADD\0\0\0\0" + struct.pack("<QQ", p["offset"], p["secinfo_flags"]) + bytes(40))
        if p["measured"]:
            data = base64.b64decode(p["data"])
            if len(data) != 4096:
                sys.exit("page at %#x has %d bytes" % (p["offset"], len(data)))
            for c in range(0, 4096, 256):
                # EEXTEND: "EEXTEND\0", offset of the chunk (u64), 48 zero bytes, 256 bytes.
                h.update(b"EEXTEND\0" + struct.pack("<Q", p["offset"] + c) + bytes(48) + data[c:c + 256])
    digest = h.hexdigest()
    print(digest)
    if digest != j["mrenclave"]:
        sys.exit("mismatch: recomputed %s, teemate says %s" % (digest, j["mrenclave"]))


main()
