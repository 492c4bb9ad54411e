"""Training on a mixture: every source split on its own, per-source counts in the metrics, exact resume, the CLI forms."""

from __future__ import annotations

import gzip
import json

import pytest

import fastload
from fastload.cli import main
from fastload.demo import demo_corpus_path
from fastload.errors import ConfigError
from fastload.train import train
from fastload.train.metrics import read_metrics


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The demo corpus split by kind into three tokenized datasets of 125 documents, 25 a block."""
    root = tmp_path_factory.mktemp("mix")
    rows = [json.loads(line) for line in gzip.open(demo_corpus_path())]
    paths = {}
    for kind in ("prose", "code", "translation"):
        paths[kind] = root / kind
        fastload.convert((r for r in rows if r["kind"] == kind), paths[kind], tokenizer="default", block_rows=25, quiet=True)
    return paths


def test_training_on_a_mixture_logs_what_each_source_delivered_and_resumes(sources, tiny_config, tmp_path):
    mix = fastload.Mixture({"prose": (sources["prose"], 2), "code": (sources["code"], 1), "translation": (sources["translation"], 1)})
    first = train(mix, tiny_config(steps=6, eval_every=3), quiet=True)
    records = [r for r in first.records if r["kind"] == "train"]
    last = records[-1]["sources"]
    # 4 rows a step: 2 prose, 1 code, 1 translation, every step; 33 tokens a row
    assert {name: c["rows"] for name, c in last.items()} == {"prose": 12, "code": 6, "translation": 6}
    assert last["prose"]["tokens"] == 12 * 33
    assert [r for r in first.records if r["kind"] == "start"][0]["mixture"]["weights"] == {"prose": "1/2", "code": "1/4", "translation": "1/4"}
    assert any(r["kind"] == "eval" for r in first.records)  # the held-out blocks of each source
    resumed = train(mix, tiny_config(steps=8, eval_every=3, resume=True), quiet=True)
    again = [r for r in resumed.records if r["kind"] == "train"]
    assert again[0]["step"] == 7 and again[-1]["sources"]["code"]["rows"] == 8
    logged = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in logged] == list(range(1, 9))

    changed = fastload.Mixture({"prose": (sources["prose"], 1), "code": (sources["code"], 1), "translation": (sources["translation"], 1)})
    with pytest.raises(ConfigError, match=r"'prose' weight 1/2 \(now 1/3\)"):
        train(changed, tiny_config(steps=10, resume=True), quiet=True)


def test_the_cli_takes_a_mixture_as_words_or_a_toml_file(sources, tmp_path, capsys):
    run = ["--config", "tiny", "--seq-len", "32", "--batch-size", "4", "--workers", "0", "--log-every", "2", "--no-plot", "--steps", "2", "--validation", "0"]
    words = [f"{name}={path}:{w}" for (name, path), w in zip(sources.items(), ("0.5", "0.25", "0.25"))]
    assert main(["train", "--mix", *words, *run, "--out", str(tmp_path / "words")]) == 0
    out = capsys.readouterr().out
    assert "step      2" in out and "tokens prose 132  code 66  translation 66" in out  # 2 steps of 2 + 1 + 1 rows of 33 tokens
    toml = tmp_path / "mix.toml"
    toml.write_text("".join(f'[sources.{name}]\npath = "{path}"\nweight = {w}\n' for (name, path), w in zip(sources.items(), (2, 1, 1))))
    assert main(["train", str(toml), *run, "--out", str(tmp_path / "toml")]) == 0
    assert "step      2" in capsys.readouterr().out
    assert main(["train", "--mix", "prose=nowhere", *run]) == 1
    assert "NAME=PATH:WEIGHT" in capsys.readouterr().err
    assert main(["train", str(sources["prose"]), "--mix", words[0], *run]) == 1
    assert "not both" in capsys.readouterr().err


def test_mixture_words_and_files_are_read_exactly(tmp_path):
    mix = fastload.Mixture.parse(["web=s3://bucket/web:0.6", "code=data/code:0.4:stop"])
    assert mix.datasets == {"web": "s3://bucket/web", "code": "data/code"}
    assert str(mix.weights["web"]) == "3/5" and mix.on_exhausted == {"web": "repeat", "code": "stop"}
    (tmp_path / "m.toml").write_text('[sources.a]\npath = "rel/a"\nweight = 3\non_exhausted = "stop"\n[sources.b]\npath = "/abs/b"\nweight = 1\n')
    from_file = fastload.Mixture.from_toml(tmp_path / "m.toml")
    assert from_file.datasets == {"a": str(tmp_path / "rel/a"), "b": "/abs/b"} and str(from_file.weights["a"]) == "3/4"
    for bad, message in [("m2.toml", "needs a \\[sources.NAME\\] table"), ("m3.toml", "unknown keys colour")]:
        (tmp_path / bad).write_text('x = 1\n' if bad == "m2.toml" else '[sources.a]\npath = "a"\nweight = 1\ncolour = "red"\n')
        with pytest.raises(ConfigError, match=message):
            fastload.Mixture.from_toml(tmp_path / bad)
    for words, message in [(["web"], "NAME=PATH:WEIGHT"), (["a=x:1", "a=y:2"], "given twice"), (["a=x:-1"], "negative")]:
        with pytest.raises(ConfigError, match=message):
            fastload.Mixture.parse(words)


def test_a_mixture_that_stops_ends_training_cleanly_and_says_why(sources, tiny_config, tmp_path, capsys):
    rows = [json.loads(line) for line in gzip.open(demo_corpus_path())]
    short = [{"text": r["text"][:300]} for r in rows if r["kind"] == "code"][:40]  # about 40 x 100 tokens
    fastload.convert(short, tmp_path / "short", tokenizer="default", block_rows=10, quiet=True)
    mix = fastload.Mixture({"prose": (sources["prose"], 1), "short": (tmp_path / "short", 1)}, on_exhausted={"short": "stop"})
    result = train(mix, tiny_config(steps=100_000, validation=0, eval_every=100_000, log_every=50))
    end = [r for r in result.records if r["kind"] == "end"][0]
    assert end["stopped_early"] and "a source set to on_exhausted='stop' was read whole" in end["reason"]
    assert result.steps == 52 and result.stopped_early  # 40 short documents: 52 batches of 2 rows of 33 tokens
    assert "stopped early: the mixture ended after" in capsys.readouterr().err
