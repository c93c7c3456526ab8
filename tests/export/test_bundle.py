"""export bundle: model_index.json names every component with its licence, trained components are
copied in and third-party ones referenced, the bundle reloads from its folder, and bad input is
one clear line without harming an existing bundle."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from export.bundle import BundleConfig, BundleError, build_bundle, load_bundle, most_restrictive
from shqip_av.files import OWNER_RECORD

# the test's own runs carry no licence in a card: given, as a user would
OURS = ["generator=apache-2.0", "expert=apache-2.0", "asr=apache-2.0"]


def _cfg(out, demo_run, demo_expert, generator_folder, **kw):
    kw.setdefault("license", OURS)
    return BundleConfig(
        out=str(out), asr=str(demo_run), generator=str(generator_folder), expert=str(demo_expert[0]), **kw
    )


def test_bundle_names_every_component_with_its_licence_and_reloads(
    demo_run, demo_expert, generator_folder, tiny_marian, tmp_path
):
    out = build_bundle(
        _cfg(
            tmp_path / "exports" / "sq-en",
            demo_run,
            demo_expert,
            generator_folder,
            mt=str(tiny_marian),
            tts="espeak:en",
        )
    )
    index = json.loads((out / "model_index.json").read_text())
    for name in ("asr", "mt", "tts", "generator", "expert"):
        entry = index[name]
        assert {"class", "source", "license", "included"} <= set(entry), name
    # trained and local components are inside the bundle; the LoRA adapter's local base travels with it
    assert index["asr"]["included"] and index["asr"]["adapter"] and index["asr"]["base"]["included"]
    assert (out / "asr" / "adapter_config.json").is_file() and (out / "asr-base" / "config.json").is_file()
    assert (
        index["mt"]["class"] == "MarianMTModel"
        and index["mt"]["family"] == "marian"
        and index["mt"]["license"] == "cc0-1.0"
    )
    assert index["tts"] == {**index["tts"], "backend": "espeak", "included": False, "license": "gpl-3.0"}
    assert index["most_restrictive_license"] == "gpl-3.0"
    card = (out / "README.md").read_text()
    assert "Most restrictive licence: gpl-3.0" in card and "synthetic" in card and "license: gpl-3.0" in card
    assert not list(out.parent.glob(".*"))  # no staging folder left behind

    bundle = load_bundle(str(out))
    gen = bundle.load_generator().eval()
    from shqip_av.components.lipsync_generator import load_generator

    ref = load_generator(str(generator_folder)).eval()
    x = (torch.rand(1, 5, 3, 32, 32), torch.rand(1, 2, 3, 32, 32), torch.randn(1, 5, 80, 16))
    with torch.no_grad():
        assert torch.equal(gen(*x), ref(*x))
    assert bundle.load_expert().sync_config.frames == 5
    asr = bundle.load_asr()
    features = asr.processor.feature_extractor([0.0] * 16000, sampling_rate=16000, return_tensors="pt").input_features
    assert asr.model.generate(input_features=features, max_new_tokens=3).shape[0] == 1
    model, tokenizer, family = bundle.load_mt()
    assert (
        family == "marian"
        and model.generate(**tokenizer(["Mirëdita."], return_tensors="pt"), max_new_tokens=3).shape[0] == 1
    )


def test_third_party_components_are_referenced_by_id_and_revision(demo_run, demo_expert, generator_folder, tmp_path):
    out = build_bundle(
        _cfg(
            tmp_path / "b",
            demo_run,
            demo_expert,
            generator_folder,
            mt="Helsinki-NLP/opus-mt-sq-en",
            tts="vits:facebook/mms-tts-eng",
            revision=["mt=0123abc"],
        )
    )
    index = json.loads((out / "model_index.json").read_text())
    assert index["mt"] == {
        **index["mt"],
        "source": "Helsinki-NLP/opus-mt-sq-en",
        "revision": "0123abc",
        "included": False,
        "license": "cc-by-4.0",
        "family": "marian",
    }
    assert index["tts"]["source"] == "facebook/mms-tts-eng" and index["tts"]["license"] == "cc-by-nc-4.0"
    assert index["most_restrictive_license"] == "cc-by-nc-4.0"
    assert not (out / "mt").exists() and not (out / "tts").exists()
    assert most_restrictive(["apache-2.0", "mit"]) == "apache-2.0" and most_restrictive(["mit", "unknown"]) == "unknown"


def test_bad_input_is_one_line_and_an_existing_bundle_survives(demo_run, demo_expert, generator_folder, tmp_path):
    out = build_bundle(_cfg(tmp_path / "b", demo_run, demo_expert, generator_folder))
    before = (out / "model_index.json").read_text()
    with pytest.raises(BundleError, match="--tts 'festival:x'"):
        build_bundle(_cfg(out, demo_run, demo_expert, generator_folder, tts="festival:x"))
    with pytest.raises(BundleError, match="no such folder"):
        build_bundle(_cfg(out, demo_run, demo_expert, tmp_path / "nope"))
    with pytest.raises(BundleError, match="not a Marian"):
        build_bundle(_cfg(out, demo_run, demo_expert, generator_folder, mt="someone/some-model"))
    with pytest.raises(BundleError, match="give --generator"):
        build_bundle(BundleConfig(out=str(out), asr=str(demo_run), expert=str(demo_expert[0])))
    assert (out / "model_index.json").read_text() == before and load_bundle(str(out))
    assert not list(out.parent.glob(".*"))
    # a bundle missing a component's folder, or a component, says which
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    shutil.rmtree(broken / "generator")
    with pytest.raises(BundleError, match="lacks its generator folder"):
        load_bundle(str(broken))
    index = json.loads((out / "model_index.json").read_text())
    del index["expert"]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(BundleError, match="missing expert"):
        load_bundle(str(broken))
    with pytest.raises(BundleError, match="no model_index.json"):
        load_bundle(str(tmp_path))


def test_export_bundle_command_prints_the_components(demo_run, demo_expert, generator_folder, tmp_path, capsys):
    from export.__main__ import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "bundle",
                "--out",
                str(out),
                "--asr",
                str(demo_run),
                "--generator",
                str(generator_folder),
                "--expert",
                str(demo_expert[0]),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert str(out) in printed and "most restrictive licence" in printed and "tts espeak:" not in printed


def test_cards_publish_uploads_the_whole_bundle(demo_run, demo_expert, generator_folder, tmp_path):
    from cards.facts import CardError
    from cards.publish import PublishConfig, publish

    out = build_bundle(_cfg(tmp_path / "exports" / "b", demo_run, demo_expert, generator_folder))
    summary = publish(
        PublishConfig(root=str(tmp_path / "data"), repo="someone/dub-bundle", bundle=str(out), dry_run=True)
    )
    sent = {name for name, _ in summary["files"]}
    assert {
        "model_index.json",
        "README.md",
        "generator/model.safetensors",
        "expert/model.safetensors",
        "asr/adapter_config.json",
        "asr-base/config.json",
    } <= sent
    assert sent == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != OWNER_RECORD}
    with pytest.raises(CardError, match="not a dubbing bundle"):
        publish(PublishConfig(root=str(tmp_path / "data"), repo="someone/x", bundle=str(tmp_path), dry_run=True))


def test_translation_goes_through_generate_and_language_codes_are_checked(tiny_marian):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from export.translate import TranslationError, Translator, _nllb

    translator = Translator(
        AutoModelForSeq2SeqLM.from_pretrained(tiny_marian),
        AutoTokenizer.from_pretrained(tiny_marian),
        "marian",
        num_beams=1,
        max_new_tokens=6,
    )
    out = translator.translate(["Mirëdita.", "Si jeni?", "Faleminderit shumë."], "sq", "en", batch_size=2)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)  # random weights: any text, one per input
    assert _nllb("sq") == "als_Latn" and _nllb("eng_Latn") == "eng_Latn"
    with pytest.raises(TranslationError, match="unknown language code 'xx' for an NLLB model"):
        Translator(None, None, "nllb").check("sq", "xx")
    with pytest.raises(TranslationError, match="unknown translation model family"):
        Translator(None, None, "other").check("sq", "en")
