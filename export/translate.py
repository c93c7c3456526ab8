"""Machine translation for dubbing: transformers seq2seq models called through ``generate()``.

Each model family names its languages its own way; the dub takes ISO 639-1 codes (``sq``, ``en``)
and maps them:
- ``marian`` (Helsinki-NLP/opus-mt-*): one pair per model; a multi-target model picks the target
  with a ``>>xxx<<`` token at the start of the source, when its vocabulary has one;
- ``nllb`` (facebook/nllb-200-*): FLORES-200 codes (``als_Latn``, ``eng_Latn``) as the
  tokenizer's ``src_lang`` and the forced first token of the output;
- ``m2m100`` (facebook/m2m100_*): ISO codes as ``src_lang`` and the forced first token;
- ``madlad`` (google/madlad400-*): a ``<2xx>`` tag before the source text.
A code the family does not know is one clear error, before anything is translated.
"""

from __future__ import annotations

from shqip_av import ShqipError

# ISO 639-1 → FLORES-200 (NLLB) for the languages dubbing into and out of Albanian meets most
NLLB_CODES = {
    "sq": "als_Latn",
    "en": "eng_Latn",
    "de": "deu_Latn",
    "fr": "fra_Latn",
    "it": "ita_Latn",
    "es": "spa_Latn",
    "el": "ell_Grek",
    "tr": "tur_Latn",
    "sr": "srp_Cyrl",
    "mk": "mkd_Cyrl",
    "hr": "hrv_Latn",
    "bs": "bos_Latn",
    "ro": "ron_Latn",
    "bg": "bul_Cyrl",
    "pt": "por_Latn",
    "nl": "nld_Latn",
    "sv": "swe_Latn",
    "pl": "pol_Latn",
    "ru": "rus_Cyrl",
    "uk": "ukr_Cyrl",
    "ar": "arb_Arab",
    "zh": "zho_Hans",
    "ja": "jpn_Jpan",
    "hu": "hun_Latn",
}
# ISO 639-1 → the three-letter codes multi-target opus-mt models use in >>xxx<<
OPUS_CODES = {
    "sq": "sqi",
    "en": "eng",
    "de": "deu",
    "fr": "fra",
    "it": "ita",
    "es": "spa",
    "el": "ell",
    "tr": "tur",
    "sr": "srp_Cyrl",
    "mk": "mkd",
    "hr": "hrv",
    "ro": "ron",
    "bg": "bul",
    "pt": "por",
    "nl": "nld",
}


class TranslationError(ShqipError):
    pass


def _nllb(code: str) -> str:
    if code in NLLB_CODES.values():
        return code
    if code not in NLLB_CODES:
        raise TranslationError(
            f"unknown language code {code!r} for an NLLB model (known: {', '.join(sorted(NLLB_CODES))}, "
            "or a FLORES-200 code such as als_Latn)"
        )
    return NLLB_CODES[code]


class Translator:
    def __init__(self, model, tokenizer, family: str, *, num_beams: int = 4, max_new_tokens: int = 200):
        self.model, self.tokenizer, self.family = model, tokenizer, family
        self.num_beams, self.max_new_tokens = num_beams, max_new_tokens

    def check(self, source: str, target: str) -> None:
        """Raise TranslationError now if the model cannot name ``source`` or ``target``."""
        self._prepare(["x"], source, target)

    def _prepare(self, texts: list[str], source: str, target: str) -> tuple[list[str], dict]:
        tok, extra = self.tokenizer, {}
        if self.family == "nllb":
            src, tgt = _nllb(source), _nllb(target)
            tok.src_lang = src
            target_id = tok.convert_tokens_to_ids(tgt)
            if target_id == tok.unk_token_id:
                raise TranslationError(f"the NLLB tokenizer has no language token {tgt!r}")
            extra["forced_bos_token_id"] = target_id
        elif self.family == "m2m100":
            try:
                tok.src_lang = source
                extra["forced_bos_token_id"] = tok.get_lang_id(target)
            except (KeyError, ValueError):
                raise TranslationError(f"unknown language code {source!r} or {target!r} for an M2M100 model") from None
        elif self.family == "madlad":
            tag = f"<2{target}>"
            if tok.convert_tokens_to_ids(tag) == tok.unk_token_id:
                raise TranslationError(f"unknown language code {target!r} for a MADLAD model (no {tag} token)")
            texts = [f"{tag} {t}" for t in texts]
        elif self.family == "marian":
            targets = getattr(tok, "supported_language_codes", None) or []
            if targets:  # a multi-target opus-mt model
                tag = f">>{OPUS_CODES.get(target, target)}<<"
                if tag not in targets:
                    raise TranslationError(
                        f"unknown language code {target!r} for this opus-mt model (it knows {', '.join(targets[:12])}…)"
                    )
                texts = [f"{tag} {t}" for t in texts]
        else:
            raise TranslationError(f"unknown translation model family {self.family!r}")
        return texts, extra

    def translate(self, texts: list[str], source: str, target: str, batch_size: int = 8) -> list[str]:
        import torch

        out: list[str] = []
        for i in range(0, len(texts), batch_size):
            chunk, extra = self._prepare(texts[i : i + batch_size], source, target)
            inputs = self.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True)
            with torch.no_grad():
                ids = self.model.generate(
                    **inputs, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens, **extra
                )
            out += [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return out
