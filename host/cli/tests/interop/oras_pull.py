"""Pull what `weir push` wrote with ORAS's Python SDK (the `oras` package), as a user of the ORAS
tools would, and print what came back: the manifest and each pulled file's sha256, size and first
bytes.

    python oras_pull.py 127.0.0.1:5000 steps/scale:1
"""
import hashlib
import json
import os
import sys
import tempfile

import oras.client


def main():
    registry, reference = sys.argv[1], sys.argv[2]
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    target = f"{registry}/{reference}"
    manifest = client.get_manifest(target)
    pulled = []
    with tempfile.TemporaryDirectory() as out:
        for path in client.pull(target=target, outdir=out):
            with open(path, "rb") as f:
                data = f.read()
            pulled.append({"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "head": data[:8].hex()})
    print(json.dumps({"manifest": manifest, "files": pulled}))


if __name__ == "__main__":
    main()
