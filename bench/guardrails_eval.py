"""Precision, recall and F1 of the guardrail detectors per category on the synthetic corpus
(bench/guardrails_corpus.py). Exits non-zero when a checksum-backed category (payment_card, iban,
us_npi) falls below 0.95 precision or recall.

    .venv/bin/python -m bench.guardrails_eval [--seed N] [--per-category N] [--errors]

A finding counts as a true positive when it overlaps a labelled value of the same category; a
labelled value counts as found when a finding of its category overlaps it.
"""
import argparse
import dataclasses
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from bench.guardrails_corpus import SAMPLES_PER_CATEGORY, SEED, Sample, corpus_build  # noqa: E402
from guardrails.detection import CATEGORIES, CHECKSUM_CATEGORIES, detector_set_build, nlp_available  # noqa: E402

TARGET = 0.95


@dataclasses.dataclass
class Score:
    true_positives: int = 0
    false_positives: int = 0
    found: int = 0
    missed: int = 0

    @property
    def precision(self) -> float | None:
        reported = self.true_positives + self.false_positives
        return self.true_positives / reported if reported else None

    @property
    def recall(self) -> float | None:
        labelled = self.found + self.missed
        return self.found / labelled if labelled else None

    @property
    def f1(self) -> float | None:
        if not self.precision or not self.recall:
            return None
        return 2 * self.precision * self.recall / (self.precision + self.recall)


def corpus_evaluate(samples: list[Sample], errors: list[str] | None = None) -> dict[str, Score]:
    detectors = detector_set_build()
    scores = {category: Score() for category in CATEGORIES}
    for sample in samples:
        findings = detectors.scan(sample.text)
        for finding in findings:
            score = scores[finding.category]
            if any(label.category == finding.category and label.start < finding.end and finding.start < label.end
                   for label in sample.labels):
                score.true_positives += 1
            else:
                score.false_positives += 1
                if errors is not None:
                    errors.append(f"FP {finding.category} {sample.text[finding.start:finding.end]!r} in {sample.text!r}")
        for label in sample.labels:
            score = scores[label.category]
            if any(finding.category == label.category and label.start < finding.end and finding.start < label.end
                   for finding in findings):
                score.found += 1
            else:
                score.missed += 1
                if errors is not None:
                    errors.append(f"FN {label.category} {sample.text[label.start:label.end]!r} in {sample.text!r}")
    return scores


def below_target(scores: dict[str, Score]) -> list[str]:
    return [category for category in sorted(CHECKSUM_CATEGORIES)
            if (scores[category].precision or 0) < TARGET or (scores[category].recall or 0) < TARGET]


def _figure(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--per-category", type=int, default=SAMPLES_PER_CATEGORY)
    parser.add_argument("--errors", action="store_true", help="print every false positive and false negative")
    arguments = parser.parse_args()
    samples = corpus_build(arguments.seed, arguments.per_category)
    errors: list[str] | None = [] if arguments.errors else None
    scores = corpus_evaluate(samples, errors)
    labelled = sum(len(sample.labels) for sample in samples)
    print(f"{len(samples)} samples, {labelled} labelled values, "
          f"{sum(sample.kind == 'hard_negative' for sample in samples)} hard-negative samples; NLP detector "
          f"{'on' if nlp_available() else 'not installed (person_name n/a)'}")
    print(f"{'category':24} {'precision':>9} {'recall':>7} {'F1':>7} {'TP':>5} {'FP':>4} {'FN':>4}")
    for category in CATEGORIES:
        score = scores[category]
        marker = " *" if category in CHECKSUM_CATEGORIES else ""
        print(f"{category + marker:24} {_figure(score.precision):>9} {_figure(score.recall):>7} {_figure(score.f1):>7} "
              f"{score.true_positives:5d} {score.false_positives:4d} {score.missed:4d}")
    print(f"* checksum-backed: target precision and recall >= {TARGET}")
    for line in errors or ():
        print(line)
    failing = below_target(scores)
    if failing:
        print(f"BELOW TARGET: {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
