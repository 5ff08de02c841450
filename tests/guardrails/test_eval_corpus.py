"""The detectors against the labelled synthetic corpus (bench/guardrails_corpus.py): the issue's
targets, so that a regression in a detector fails here."""
import pytest

from bench.guardrails_corpus import HARD_NEGATIVES, corpus_build
from bench.guardrails_eval import TARGET, Score, below_target, corpus_evaluate
from guardrails.detection import CATEGORIES, CHECKSUM_CATEGORIES


@pytest.fixture(scope="module")
def corpus():
    return corpus_build()


@pytest.fixture(scope="module")
def scores(corpus):
    return corpus_evaluate(corpus)


def test_the_corpus_is_deterministic_and_large_enough(corpus):
    assert corpus == corpus_build()
    assert len(corpus) >= 500
    assert sum(sample.kind == "hard_negative" for sample in corpus) >= len(HARD_NEGATIVES)
    labelled = {label.category for sample in corpus for label in sample.labels}
    assert labelled == set(CATEGORIES) - {"person_name"}
    for sample in corpus:
        for label in sample.labels:
            assert 0 <= label.start < label.end <= len(sample.text)


def test_checksum_backed_categories_meet_the_target(scores):
    assert below_target(scores) == []
    for category in CHECKSUM_CATEGORIES:
        assert scores[category].precision >= TARGET and scores[category].recall >= TARGET


def test_every_category_keeps_its_measured_quality(scores):
    for category in set(CATEGORIES) - {"person_name"}:
        assert scores[category].precision >= 0.95, category
        assert scores[category].recall >= 0.85, category


def test_the_evaluation_fails_below_the_target():
    scores = {category: Score(true_positives=100, found=100) for category in CATEGORIES}
    assert below_target(scores) == []
    scores["iban"] = Score(true_positives=94, false_positives=6, found=100)
    scores["us_npi"] = Score(true_positives=100, found=94, missed=6)
    assert below_target(scores) == ["iban", "us_npi"]
