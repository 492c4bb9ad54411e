"""A mixture's sources may be URLs: the ':' of a scheme or port is not the weight's, and a URL is never made a Path."""

from __future__ import annotations

from fractions import Fraction

import fastload


def test_parse_keeps_urls_with_schemes_and_ports_whole():
    mix = fastload.Mixture.parse(["web=s3://b/p:0.5", "code=http://127.0.0.1:9000/code:0.25:stop", "books=data/books:0.25"])
    assert mix.datasets == {"web": "s3://b/p", "code": "http://127.0.0.1:9000/code", "books": "data/books"}
    assert mix.weights == {"web": Fraction(1, 2), "code": Fraction(1, 4), "books": Fraction(1, 4)}
    assert mix.on_exhausted["code"] == "stop"


def test_a_mixture_file_keeps_a_url_as_written_and_reads_a_relative_path_from_its_folder(tmp_path):
    toml = tmp_path / "mix.toml"
    toml.write_text('[sources.web]\npath = "s3://bucket/web/v1"\nweight = 3\n[sources.local]\npath = "data/local"\nweight = 1\n')
    mix = fastload.Mixture.from_toml(toml)
    assert mix.datasets == {"web": "s3://bucket/web/v1", "local": str(tmp_path / "data" / "local")}
