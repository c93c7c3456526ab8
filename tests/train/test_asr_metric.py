"""The Albanian normalizer and the shqip_asr evaluate module, checked by hand and against jiwer."""

from __future__ import annotations

import jiwer
import pytest

from train.asr.metric import load_metric, score
from shqip_av.normalize import normalize


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Unë pi çaj çdo mëngjes.", "unë pi çaj çdo mëngjes"),
        ("ËSHTË  E  ÇUDITSHME!", "është e çuditshme"),
        ("e\u0308shte\u0308", "është"),  # decomposed ë → NFC
        ("«Mirëdita», tha ai; – po.", "mirëdita tha ai po"),
        ("S’ka gjë, t'i them… 'po'", "s'ka gjë t'i them po"),  # apostrophe kept inside words only
        ("Viti 2024 - shkurt (ora 10:30)", "viti 2024 shkurt ora 10 30"),
        ("  \tRreshti\n i ri  ", "rreshti i ri"),
        ("eshte", "eshte"),  # missing diacritics are not "fixed"
    ],
)
def test_normalizer_rules(raw, expected):
    assert normalize(raw) == expected


def test_metric_matches_hand_counts_and_jiwer():
    refs = ["Unë pi çaj çdo mëngjes.", "Fëmijët luajnë në oborr."]
    hyps = ["Une pi çaj çdo mëngjes", "fëmijët luajnë në oborr"]
    result = score(hyps, refs)
    # raw: "Une"≠"Unë", "mëngjes"≠"mëngjes." ; "fëmijët"≠"Fëmijët", "oborr"≠"oborr." → 4 of 9 words
    assert (result["word_errors"], result["words"]) == (4, 9)
    assert result["wer"] == pytest.approx(4 / 9)
    assert result["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    # normalized: only "une" vs "unë" remains → 1 of 9 words; one character of 42
    assert (result["word_errors_normalized"], result["words_normalized"]) == (1, 9)
    assert result["wer_normalized"] == pytest.approx(
        jiwer.wer([normalize(r) for r in refs], [normalize(h) for h in hyps])
    )
    assert result["char_errors_normalized"] == 1
    assert result["cer_normalized"] == pytest.approx(
        jiwer.cer([normalize(r) for r in refs], [normalize(h) for h in hyps])
    )
    assert result["cer"] == pytest.approx(jiwer.cer(refs, hyps))


def test_metric_counts_insertions_deletions_and_empty_predictions():
    result = score(["", "një dy tre katër pesë"], ["një dy", "një dy tre"])
    # sample 1: two deletions; sample 2: two insertions → 4 errors over 5 reference words
    assert result["wer"] == pytest.approx(4 / 5)
    assert result["wer"] == pytest.approx(jiwer.wer(["një dy", "një dy tre"], ["", "një dy tre katër pesë"]))
    assert score(["ç"], ["ç"])["cer"] == 0.0


def test_metric_is_a_local_evaluate_module_loaded_offline():
    metric = load_metric()
    assert metric.name == "shqip_asr"
    metric.add_batch(predictions=["Gjuha shqipe."], references=["gjuha shqipe"])
    result = metric.compute()
    assert result["wer"] == 1.0 and result["wer_normalized"] == 0.0
