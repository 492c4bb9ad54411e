"""`fastload train` and `fastload bench` on a dataset in object storage, alone and in a --mix, with --cache-dir/--cache-bytes."""

from __future__ import annotations

import json

import pytest

import fastload
from fastload.cli import main
from fastload.demo import demo_corpus_path

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")

SMALL_RUN = ["--config", "tiny", "--seq-len", "32", "--batch-size", "2", "--eval-every", "2", "--eval-batches", "1", "--log-every", "2", "--no-plot"]


@pytest.fixture
def corpus(tmp_path, moto_endpoint) -> tuple[str, str]:
    """The tokenized demo corpus, in 25-document blocks: (its URL on the S3 server, a local copy)."""
    local, url = tmp_path / "local", f"s3://{moto_endpoint.bucket}/corpus"
    for out in (local, url):
        fastload.convert(demo_corpus_path(), out, tokenizer="default", block_rows=25, quiet=True)
    return url, str(local)


def _cached_files(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_train_reads_a_url_through_the_cache_folder_given(corpus, tmp_path, capsys, workers):
    url, _ = corpus
    cache = tmp_path / "cache"
    run = ["train", url, *SMALL_RUN, "--workers", workers, "--steps", "2", "--out", str(tmp_path / "run"), "--cache-dir", str(cache), "--cache-bytes", str(64 << 20)]
    assert main(run) == 0
    out = capsys.readouterr().out
    assert "done at step 2" in out and "eval      2  val_loss" in out
    assert _cached_files(cache)  # the blocks came through the folder given, not the default one


def test_train_mixes_a_url_and_a_local_folder(corpus, tmp_path, capsys):
    url, local = corpus
    assert main(["train", "--mix", f"web={url}:0.5", f"disk={local}:0.5", *SMALL_RUN, "--workers", "0", "--steps", "2",
                 "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "done at step 2" in capsys.readouterr().out
    assert _cached_files(tmp_path / "cache")


def test_bench_measures_a_url_through_the_cache_folder_given(corpus, tmp_path, capsys):
    url, _ = corpus
    cache = tmp_path / "cache"
    assert main(["bench", url, "--batch-size", "4", "--seq-len", "32", "--steps", "3", "--repeats", "1", "--warmup", "0",
                 "--workers", "0,2", "--cache-dir", str(cache), "--cache-bytes", "64MiB", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == url
    # both loaders with worker processes too: spawned, since this process made object-store requests
    assert {(r["loader"], r["num_workers"]) for r in report["results"]} == {(loader, w) for loader in ("naive", "fastload") for w in (0, 2)}
    assert _cached_files(cache)


def test_bench_tokenizes_a_text_only_url_on_the_fly_and_caches_its_token_counts(tmp_path, moto_endpoint, capsys):
    url = f"s3://{moto_endpoint.bucket}/text"
    fastload.convert(demo_corpus_path(), url, block_rows=25, quiet=True)
    bench = ["bench", url, "--batch-size", "4", "--seq-len", "32", "--steps", "2", "--repeats", "1", "--warmup", "0",
             "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--json"]
    counts = fastload.environment.cache_dir() / "token-counts"
    before = set(counts.iterdir()) if counts.exists() else set()
    assert main(bench) == 0
    assert json.loads(capsys.readouterr().out)["tokenized_on_the_fly"] is True
    assert len(set(counts.iterdir()) - before) == 1  # one file of counts, keyed by the remote index's digest


def test_an_array_dataset_over_a_url_keeps_the_options_it_was_opened_with(tmp_path, moto_endpoint):
    import numpy as np

    url = f"s3://{moto_endpoint.bucket}/arrays"
    fastload.convert([{"x": float(i), "label": i % 3} for i in range(200)], url, block_rows=20, quiet=True)
    arrays = fastload.ArrayDataset(fastload.Dataset(url, cache_dir=tmp_path / "cache", cache_bytes=1 << 20))
    assert arrays.dataset.cache_dir == tmp_path / "cache" and arrays.dataset.cache_bytes == 1 << 20
    batch = arrays.__fastload_batch__(next(iter(arrays.batch_sampler(10))), np.empty)
    assert len(batch["x"]) == 10 and _cached_files(tmp_path / "cache")
