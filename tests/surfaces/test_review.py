"""The dataset review page (python -m filter.report --html) of the demo root, opened from disk in a
headless chromium: no console errors, the counts per reason and split equal clips/manifest.jsonl and
clips/rejected.jsonl (the splits the shards on disk), the filters hide what they should, a click
plays a clip, and a rerun makes only the pictures whose inputs changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from filter.shard import current_keys
from shqip_av.files import DatasetRoot
from shqip_av.manifest import read_jsonl
from tests.browser import browser_errors, screenshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def review_root(demo_root, tmp_path_factory):
    """A copy of the session's demo root (hard links: the review page writes only under cards/)."""
    root = tmp_path_factory.mktemp("review") / "data"
    shutil.copytree(demo_root, root, copy_function=os.link, ignore=shutil.ignore_patterns("cards", "*.lock"))
    proc = subprocess.run(
        [sys.executable, "-m", "filter.report", "--root", str(root), "--html"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "review page:" in proc.stdout and "made" in proc.stdout
    return root


def test_the_review_page_opens_from_disk_with_the_records_counts_and_plays_a_clip(review_root, browser):
    page = review_root / "cards" / "review" / "index.html"
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)")
    )
    screenshot(browser, "review-page")
    assert browser_errors(browser) == []
    broken = browser.execute_script("return Array.from(document.images).filter(i => !i.naturalWidth).length")
    assert broken == 0

    kept = list(read_jsonl(review_root / "clips" / "manifest.jsonl"))
    rejected = Counter(r["reason"] for r in read_jsonl(review_root / "clips" / "rejected.jsonl"))
    assert rejected, "the demo's deliberately bad clips give the page rejections to show"
    shown = {
        e.get_attribute("data-count-reason"): int(e.text)
        for e in browser.find_elements(By.CSS_SELECTOR, "[data-count-reason]")
    }
    assert shown == dict(rejected)
    keys = current_keys(DatasetRoot(review_root))
    expected_splits = {s: len(k) for s, k in keys.items() if k}
    expected_splits.update({"unsharded": n} if (n := len(kept) - sum(expected_splits.values())) else {})
    splits = {
        e.get_attribute("data-count-split"): int(e.text)
        for e in browser.find_elements(By.CSS_SELECTOR, "[data-count-split]")
    }
    assert splits == expected_splits
    assert int(browser.find_element(By.CSS_SELECTOR, "[data-count=kept]").text) == len(kept)
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.split figure.clip")) == len(kept)

    # a filter by reason leaves that reason's examples only; by speaker, that speaker's cards
    reason = rejected.most_common(1)[0][0]
    Select(browser.find_element(By.ID, "filter-reason")).select_by_value(reason)
    visible = [f for f in browser.find_elements(By.CSS_SELECTOR, "figure.clip") if f.is_displayed()]
    assert visible and {f.get_attribute("data-reason") for f in visible} == {reason}
    Select(browser.find_element(By.ID, "filter-reason")).select_by_value("")
    speaker = kept[0]["speaker"]
    Select(browser.find_element(By.ID, "filter-speaker")).select_by_value(speaker)
    visible = [f for f in browser.find_elements(By.CSS_SELECTOR, "figure.clip") if f.is_displayed()]
    assert visible and {f.get_attribute("data-speaker") for f in visible} == {speaker}
    Select(browser.find_element(By.ID, "filter-speaker")).select_by_value("")

    # a click on a kept sample plays its span of the collected video
    figure = browser.find_element(By.CSS_SELECTOR, "section.split figure.clip")
    start = float(figure.get_attribute("data-play").split("#t=")[1].split(",")[0])
    browser.execute_script("arguments[0].scrollIntoView()", figure)
    figure.find_element(By.CSS_SELECTOR, ".frame").click()
    playing = WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            "const v = arguments[0].querySelector('video');"
            "return v && !v.paused && v.currentTime > arguments[1] ? v.currentTime : false;",
            figure,
            start,
        )
    )
    assert playing > start
    screenshot(browser, "review-page-playing")
    assert browser_errors(browser) == []


def test_a_rerun_makes_only_the_pictures_whose_inputs_changed(review_root):
    from filter.review import write_review

    _, counts = write_review(review_root)
    assert counts["made"] == 0 and counts["kept"] > 0
    record = next(iter(read_jsonl(review_root / "clips" / "manifest.jsonl")))
    clip = review_root / record["files"]["mp4"]
    data = clip.read_bytes()
    clip.unlink()  # a hard link to the session's root: replaced by a copy, not written through
    clip.write_bytes(data)
    _, counts = write_review(review_root)
    assert counts["made"] == 1
    state = json.loads((review_root / "cards" / "review" / "thumbs" / "pictures.json").read_text())
    assert all((review_root / "cards" / "review" / "thumbs" / name).is_file() for name in state)


def test_the_dataset_card_links_to_the_review_page(review_root):
    from cards.dataset_card import DatasetCardConfig, build_dataset_card

    card = build_dataset_card(DatasetCardConfig(root=str(review_root))).read_text()
    assert "](../review/index.html)" in card


def test_a_record_that_leads_outside_the_root_is_shown_as_bad_and_the_rest_is_written(review_root, tmp_path):
    """A hostile manifest line (a key and video id with ../, a very long word) does not stop the
    page: that record is shown without a picture and said to be bad, every other record is there."""
    from filter.review import write_review

    root = tmp_path / "data"
    shutil.copytree(review_root, root, copy_function=os.link, ignore=shutil.ignore_patterns("cards", "*.lock"))
    rejected = root / "clips" / "rejected.jsonl"
    good = list(read_jsonl(rejected))
    hostile = dict(good[0], key="../../../etc/passwd", video_id="../../../etc", detail="x" * 400)
    kept = root / "clips" / "manifest.jsonl"
    kept_records = list(read_jsonl(kept))
    bad_kept = json.loads(json.dumps(kept_records[0]))
    bad_kept.update(key="../../outside", video_id="../..")
    rejected.unlink()  # hard links to the session's root: replaced, not written through
    rejected.write_text("".join(json.dumps(r) + "\n" for r in [hostile, *good]))
    kept.unlink()
    kept.write_text("".join(json.dumps(r) + "\n" for r in [bad_kept, *kept_records]))
    page, counts = write_review(root)
    html = page.read_text()
    assert counts["outside the root"] >= 1
    assert "record names a path outside the dataset root" in html
    for r in good[:3] + kept_records[:3]:
        assert r["key"] in html
    assert not (tmp_path / "etc").exists() and not list((root / "cards" / "review" / "thumbs").glob("*passwd*"))
