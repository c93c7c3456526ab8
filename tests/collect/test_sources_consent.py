import json
from pathlib import Path

import pytest

from collect.consent import admit, normalise_license
from collect.sources import SourcesError, load_sources
from shqip_av.records import Consent

RECORDED = json.loads((Path(__file__).parents[1] / "fixtures" / "youtube_info.json").read_text())
ALLOW = ["CC BY", "CC BY-SA", "CC0", "PDM"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Creative Commons Attribution license (reuse allowed)", "CC BY 3.0"),
        ("Standard YouTube License", "YouTube Standard License"),
        ("by-sa", "CC BY-SA"),
        ("by-nc", "CC BY-NC"),
        ("https://creativecommons.org/licenses/by-nc-nd/3.0/", "CC BY-NC-ND 3.0"),
        ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0 1.0"),
        ("CC-BY-4.0", "CC BY 4.0"),
        ("cc0", "CC0 1.0"),
        ("Attribution-ShareAlike 4.0 International", "CC BY-SA 4.0"),
        (None, None),
    ],
)
def test_licence_strings_normalise(text, expected):
    assert normalise_license(text) == expected


def test_recorded_youtube_metadata_decides_admission():
    cc, none, standard = RECORDED
    d = admit(cc["license"], None, ALLOW)
    assert (d.admitted, d.basis, d.license) == (True, "licence", "CC BY 3.0")
    d = admit(none["license"], None, ALLOW)
    assert (d.admitted, d.reason) == (False, "no-consent")
    d = admit(standard["license"], None, ALLOW)
    assert (d.admitted, d.reason) == (False, "license-not-allowed")
    # an explicit consent record admits the same video, with consent as the basis
    consent = Consent(kind="channel-permission", subject="Podcast Tirana", reference="email 2025-01-02")
    d = admit(standard["license"], consent, ALLOW)
    assert (d.admitted, d.basis) == (True, "consent")


def test_nc_and_declared_licences_need_consent():
    assert admit("by-nc", None, ALLOW).reason == "license-not-allowed"
    d = admit(None, None, ALLOW, declared_license="CC BY 4.0")
    assert not d.admitted and "needs a consent record" in d.detail


def write(tmp_path, text):
    p = tmp_path / "sources.yaml"
    p.write_text(text)
    return p


def test_sources_parse_with_defaults_and_relative_paths(tmp_path):
    p = write(
        tmp_path,
        """
defaults:
  language: sq
  max_videos: 5
sources:
  - url: https://www.youtube.com/@kanali
    consent: {kind: channel-permission, subject: Kanali, reference: letter 3, granted: 2025-02-01}
  - path: recordings/arta.mp4
    license: CC BY 4.0
    dialect: Gheg
    consent: {kind: release, subject: Arta, reference: form 12}
""",
    )
    s = load_sources(p)
    a, b = s.entries
    assert a.url.endswith("@kanali") and a.max_videos == 5 and a.consent.kind == "channel-permission"
    assert a.dialect is None and b.dialect == "gheg"
    assert b.path == tmp_path / "recordings" / "arta.mp4" and b.consent.granted is None and b.line == 8


@pytest.mark.parametrize(
    "text,match",
    [
        ("sources:\n  - url: https://x.org/a.mp4\n    licence: CC BY\n", r"sources.yaml:3: unknown key 'licence'"),
        (
            "sources:\n  - url: https://x.org/a.mp4\n    path: a.mp4\n",
            r"sources.yaml:2: .*exactly one of 'url' or 'path'",
        ),
        ("sources:\n  - url: ftp://x.org/a.mp4\n", r"sources.yaml:2: 'url' must be an http\(s\) URL"),
        (
            "sources:\n  - url: https://x\n    consent: {kind: verbal, subject: a, reference: b}\n",
            r"sources.yaml:3: consent kind must be one of",
        ),
        (
            "sources:\n  - url: https://x\n    consent: {kind: release, subject: a}\n",
            r"sources.yaml:3: consent record needs a non-empty 'reference'",
        ),
        ("sources:\n  - url: https://x\n  - url: [unclosed\n", r"sources.yaml:\d+: invalid YAML"),
        ("sorces:\n  - url: https://x\n", r"sources.yaml:1: unknown top-level key 'sorces'"),
        ("sources: https://x\n", r"sources.yaml:1: 'sources' must be a list"),
        (
            "sources:\n  - url: https://x\n    dialect: arbëresh\n",
            r"sources.yaml:3: 'dialect' must be one of gheg, tosk, mixed",
        ),
    ],
)
def test_malformed_sources_name_the_line(tmp_path, text, match):
    with pytest.raises(SourcesError, match=match):
        load_sources(write(tmp_path, text))


def test_missing_sources_file_says_what_to_do(tmp_path):
    with pytest.raises(SourcesError, match="sources file not found .*collect.sample"):
        load_sources(tmp_path / "sources.yaml")
