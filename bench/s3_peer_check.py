"""Check, in the benchmarks' environment, that the peers `bench/remote.py` measures download through the folder S3 server.

    python bench/s3_peer_check.py          # with bench/requirements.txt installed; prints what passed, exits 1 on a failure

MosaicML Streaming (its boto3 downloader) and LitData (boto3 for its index,
obstore ranged GETs for its chunks) must read from `tests/remote/folder_s3.py`
exactly what was put there, or `bench/remote.py`'s peer rows measure a
failure. These are checks of the benchmark's set-up, not of fastload, so
they live here rather than in the test suite, whose environment does not
install the peers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.remote.folder_s3 import FolderS3Server  # noqa: E402

BIG = np.random.default_rng(1).integers(0, 256, 20 << 20, dtype=np.uint8).tobytes()  # past boto3's 8 MiB multipart and LitData's 16 MiB
INDEX = b'{"shards": []}'

MOSAICML_DOWNLOAD = """
import sys
sys.path.insert(0, "bench")
from token_loaders.mds_shards import import_streaming  # as bench/remote.py imports it (torchvision stubbed where it cannot load)
import_streaming()
from streaming.base.storage.download import CloudDownloader
for remote, local in zip(sys.argv[1::2], sys.argv[2::2]):
    CloudDownloader.direct_download(remote, local)
"""


def check_mosaicml(server: FolderS3Server, bucket: str, folder: Path) -> None:
    env = {**os.environ, **server.env(), "S3_ENDPOINT_URL": server.endpoint}  # bench/remote.py's settings
    files = [arg for name in ("index.json", "big.bin") for arg in (f"s3://{bucket}/shards/{name}", str(folder / name))]
    run = subprocess.run([sys.executable, "-c", MOSAICML_DOWNLOAD, *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (folder / "big.bin").read_bytes() == BIG and (folder / "index.json").read_bytes() == INDEX


def check_litdata(server: FolderS3Server, bucket: str, folder: Path) -> None:
    from litdata.streaming import downloader

    os.environ.update(server.env())
    downloader._OBSTORE_CLIENT_OPTIONS["allow_http"] = "true"  # as bench/remote.py does
    ranged = []
    write_ranges = downloader._write_obstore_ranges_to_tmp
    downloader._write_obstore_ranges_to_tmp = lambda path, parts: ranged.append(path) or write_ranges(path, parts)
    chunks = [{"filename": "big.bin", "chunk_bytes": len(BIG)}]
    s3 = downloader.S3Downloader(f"s3://{bucket}/shards", str(folder), chunks, storage_options={"endpoint_url": server.endpoint})
    for name in ("index.json", "big.bin"):
        s3.download_file(f"s3://{bucket}/shards/{name}", str(folder / name))
    assert (folder / "big.bin").read_bytes() == BIG and (folder / "index.json").read_bytes() == INDEX
    assert len(ranged) == 1, "the chunk did not come by parallel ranged GETs (LitData falls back to one GET when they fail)"


def main() -> None:
    failed = False
    with tempfile.TemporaryDirectory() as tmp, FolderS3Server(Path(tmp) / "store") as server:
        bucket = server.create_bucket("peers")
        server.client().put_object(Bucket=bucket, Key="shards/big.bin", Body=BIG)
        server.client().put_object(Bucket=bucket, Key="shards/index.json", Body=INDEX)
        for name, check in (("MosaicML Streaming", check_mosaicml), ("LitData", check_litdata)):
            folder = Path(tmp) / name.split()[0].lower()
            folder.mkdir()
            try:
                check(server, bucket, folder)
            except Exception as exc:  # noqa: BLE001 - report every peer, then fail
                failed = True
                print(f"{name}: FAILED: {type(exc).__name__}: {exc}"[:2000])
            else:
                print(f"{name}: downloads through the folder S3 server: ok")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
