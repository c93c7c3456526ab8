"""shqip_asr: WER and CER for Albanian, raw and normalized, as a local `evaluate` module.

Load it by path, offline (``evaluate.load("wer")`` would fetch a script from the Hub):

    from train.asr.metric import load_metric
    metric = load_metric()
    metric.compute(predictions=["Unë pi çaj."], references=["unë pi çaj"])

Returns corpus-level rates (errors summed over all pairs, divided by the reference length):
``wer``/``cer`` on the texts as given, ``wer_normalized``/``cer_normalized`` after
``shqip_av.normalize.normalize`` (NFC, lower case, punctuation, whitespace; ë and ç kept), and
the counts behind them (``words``, ``chars``, ``*_errors``) so results from several runs can be
added up. Rates are ``None`` when the references hold no words at all.
"""

import datasets
import evaluate
import jiwer

from shqip_av.normalize import normalize

_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, the recognizer's transcripts.
    references: list of str, the reference transcripts (same length).
Returns:
    dict with wer, cer, wer_normalized, cer_normalized (float or None) and the error and length
    counts behind each (int).
"""


def _spaced(text):
    # jiwer's character measures count spaces as characters; a collapsed form keeps that stable
    return " ".join(text.split())


def _rates(predictions, references, suffix):
    pairs = [(_spaced(p), _spaced(r)) for p, r in zip(predictions, references)]
    word_err = words = char_err = chars = 0
    for hyp, ref in pairs:
        if ref:
            w = jiwer.process_words(ref, hyp)
            c = jiwer.process_characters(ref, hyp)
            word_err += w.substitutions + w.deletions + w.insertions
            words += w.substitutions + w.deletions + w.hits
            char_err += c.substitutions + c.deletions + c.insertions
            chars += c.substitutions + c.deletions + c.hits
        else:  # nothing to recognize: every predicted word/char is an insertion
            word_err += len(hyp.split())
            char_err += len(hyp)
    return {
        f"wer{suffix}": word_err / words if words else None,
        f"cer{suffix}": char_err / chars if chars else None,
        f"word_errors{suffix}": word_err,
        f"words{suffix}": words,
        f"char_errors{suffix}": char_err,
        f"chars{suffix}": chars,
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ShqipAsr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                }
            ),
            reference_urls=["https://github.com/jitsi/jiwer"],
        )

    def _compute(self, predictions, references):
        result = _rates(predictions, references, "")
        result.update(_rates([normalize(p) for p in predictions], [normalize(r) for r in references], "_normalized"))
        return result
