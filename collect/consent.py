"""Who may enter raw/: licence allow-list or an explicit consent record (DESIGN.md §2).

Platforms report licences in their own words (YouTube: "Creative Commons Attribution license
(reuse allowed)"; Vimeo: "by-sa"; others a creativecommons.org URL). ``normalise_license`` maps
them to one spelling ("CC BY 3.0", "CC BY-SA 4.0", "CC0 1.0"); ``admit`` decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shqip_av.records import Consent

# Licence families admitted by default: they allow redistribution and derivatives (crops,
# resampled audio), which a dataset needs. NC and ND variants are deliberately absent.
DEFAULT_ALLOWLIST = ["CC BY", "CC BY-SA", "CC0", "PDM"]

_YOUTUBE = {
    "creative commons attribution license (reuse allowed)": "CC BY 3.0",
    "standard youtube license": "YouTube Standard License",
}
_CC_WORDS = [  # long names, most specific first
    ("attribution-noncommercial-noderivs", "BY-NC-ND"),
    ("attribution-noncommercial-noderivatives", "BY-NC-ND"),
    ("attribution-noncommercial-sharealike", "BY-NC-SA"),
    ("attribution-noncommercial", "BY-NC"),
    ("attribution-noderivs", "BY-ND"),
    ("attribution-noderivatives", "BY-ND"),
    ("attribution-sharealike", "BY-SA"),
    ("attribution", "BY"),
]
_URL = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z-]+)/(\d\.\d)?")
_SHORT = re.compile(r"^(?:cc[\s_-]*)?(by(?:-nc)?(?:-nd|-sa)?)(?:[\s_-]*(\d\.\d))?$")
_CC0 = re.compile(r"^cc[\s_-]*0(?:[\s_-]*(\d\.\d))?$|^cc[\s_-]*zero")


def normalise_license(text: str | None) -> str | None:
    """One spelling for a licence string, or the cleaned original when it is not recognised."""
    if not text or not str(text).strip():
        return None
    raw = " ".join(str(text).split())
    t = raw.lower()
    if t in _YOUTUBE:
        return _YOUTUBE[t]
    m = _URL.search(t)
    if m:
        kind, code, version = m.groups()
        if kind == "publicdomain":
            return "CC0 " + (version or "1.0") if code == "zero" else "PDM " + (version or "1.0")
        return f"CC {code.upper()}" + (f" {version}" if version else "")
    if _CC0.match(t):
        version = _CC0.match(t).group(1) if _CC0.match(t).group(1) else "1.0"
        return f"CC0 {version}"
    if t in ("public domain", "public domain mark", "pdm"):
        return "PDM 1.0"
    m = _SHORT.match(t)
    if m:
        return f"CC {m.group(1).upper()}" + (f" {m.group(2)}" if m.group(2) else "")
    if "creative commons" in t or t.startswith("attribution"):
        version = re.search(r"(\d\.\d)", t)
        for words, code in _CC_WORDS:
            if words in t.replace(" ", "-").replace("--", "-") or words.replace("-", " ") in t:
                return f"CC {code}" + (f" {version.group(1)}" if version else "")
    return raw


def license_family(name: str | None) -> str | None:
    """'CC BY-SA 4.0' → 'CC BY-SA' (version dropped) for allow-list comparison."""
    if not name:
        return None
    return re.sub(r"\s+\d\.\d$", "", name).strip()


@dataclass
class Admission:
    admitted: bool
    basis: str | None  # "licence" or "consent"
    license: str | None  # the normalised licence that applies
    reason: str | None = None  # reason code when refused
    detail: str = ""


def admit(
    platform_license: str | None, consent: Consent | None, allowlist: list[str], declared_license: str | None = None
) -> Admission:
    """Admission rule: an allow-listed licence reported by the platform, or an explicit consent
    record. A licence the collector merely declares is recorded but is no basis on its own: it
    needs a consent record (kind ``licence``) that says where the licence statement is."""
    allowed = {license_family(normalise_license(a)) for a in allowlist}
    reported = normalise_license(platform_license)
    declared = normalise_license(declared_license)
    if reported and license_family(reported) in allowed:
        return Admission(True, "licence", reported)
    if consent is not None:
        return Admission(True, "consent", declared or reported)
    if reported:
        return Admission(
            False,
            None,
            reported,
            "license-not-allowed",
            f"licence '{reported}' is not in the allow-list ({', '.join(allowlist)}) and no consent record is given",
        )
    if declared:
        return Admission(
            False,
            None,
            declared,
            "no-consent",
            f"declared licence '{declared}' needs a consent record (kind: licence) with a reference",
        )
    return Admission(False, None, None, "no-consent", "no licence reported and no consent record in sources.yaml")
