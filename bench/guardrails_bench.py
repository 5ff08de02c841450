"""Time of the guardrail detectors on the request path: scan (all regex/checksum categories) plus
redaction of a realistic 2 KB prompt, clean and with findings, and the bounded time of a 1 MB prompt.

    .venv/bin/python -m bench.guardrails_bench [--iterations 2000]

Target (issue 6): under 1 ms at p50 for a 2 KB prompt with the regex/checksum set. The exit code
checks the CPU-time p50 (what the scan costs the process); wall-clock figures are printed too but
grow with whatever else runs on the machine.
"""
import argparse
import os
import statistics
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402

from guardrails.detection import CATEGORIES, CustomPattern, Redactor, detector_set_build  # noqa: E402

TARGET_P50_MS = 1.0
# Everything but the optional NLP detector: the regex/checksum set.
REGEX_CATEGORIES = frozenset(CATEGORIES) - {"person_name"}
CLEAN_PROMPT = (
    "You are a helpful assistant for the operations team. Summarize the meeting notes below in five bullet points, "
    "then list the action items with their owners. Keep it under 200 words and use plain language.\n\n"
    "Notes (2024-11-21, 10:00-11:15): attendees from platform, billing and support. The platform team reported that "
    "the migration of 14 services to the new cluster finished on Tuesday; p95 latency dropped from 310 ms to 230 ms, "
    "and error rates stayed below 0.2%. Release 3.4.1 goes out next Thursday after the load test. Billing asked for "
    "the invoice export to include tax lines per region (EU, UK, US) and for the retry job to back off after 3 "
    "failures. Support said ticket volume is up 12% week over week, mostly password resets and questions about the "
    "new dashboard; they want a help-center article and a banner in the app. Security reminded everyone that keys "
    "must live in the vault and that the quarterly access review is due on December 5. Budget: the team has 18 "
    "engineer-weeks for Q1; the roadmap review moves to January 9. Open questions: who owns the on-call rota for the "
    "holidays, whether to deprecate the v1 endpoints in March, and how to measure adoption of the new search. "
    "Next sync: Monday at 9:30 in room 4B. Please also draft a short, friendly note to the wider team announcing the "
    "migration results and thanking everyone involved, without internal jargon, suitable for the company newsletter."
)
PII_PROMPT = (
    "Please draft a reply to this customer. Keep it short and polite.\n\n"
    "From: Jane Roe <jane.roe@example.com>\nPhone: (415) 555-2671\n"
    "Hi, I was charged twice for order 2024-118-2231. My card is 4111 1111 1111 1111 and my IBAN for the refund is "
    "DE89 3704 0044 0532 0130 00. For identity: SSN 123-45-6789, DOB: 03/14/1985, and I live at 1600 Pennsylvania "
    "Ave NW, Washington, DC 20500. My member ID: XGH123456789 in case the pharmacy needs it. I also pasted my API key "
    "sk-proj-abcdefghijklmnopqrstuvwxyz123456 by mistake, please ignore it. Thanks!\n\n"
)


def to_length(text: str, length: int) -> str:
    return (text * (length // len(text) + 1))[:length]


def measure(detectors, text: str, iterations: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds per scan + redaction; CPU time is what stays comparable when
    other processes share the machine."""
    wall, cpu = [], []
    for _ in range(iterations):
        started, started_cpu = time.perf_counter(), time.thread_time()
        redactor = Redactor()
        redactor.redact(text, detectors.scan(text, REGEX_CATEGORIES))
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, cpu


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    arguments = parser.parse_args()
    detectors = detector_set_build()
    with_custom = detector_set_build(custom=(CustomPattern("order_id", r"ORD-\d{6}"), CustomPattern("project", r"PRJ-[A-Z]{3}-\d+")))
    clean = to_length(CLEAN_PROMPT, 2048)
    with_findings = PII_PROMPT + clean[:2048 - len(PII_PROMPT)]
    failed = False
    print(f"scan + redact, {arguments.iterations} iterations, categories: all but person_name")
    for name, detector_set, text in (("2 KB clean", detectors, clean), ("2 KB with findings", detectors, with_findings),
                                     ("2 KB with findings + 2 custom", with_custom, with_findings)):
        measure(detector_set, text, 50)  # warm-up
        wall, cpu = measure(detector_set, text, arguments.iterations)
        findings = len(detector_set.scan(text, REGEX_CATEGORIES))
        print(f"  {name:32} {len(text):5d} chars {findings:2d} findings  wall p50 {statistics.median(wall):.3f} ms p95 "
              f"{percentile(wall, 0.95):.3f} ms  CPU p50 {statistics.median(cpu):.3f} ms p95 {percentile(cpu, 0.95):.3f} ms")
        failed |= statistics.median(cpu) >= TARGET_P50_MS
    huge = to_length(with_findings, 1_000_000)
    started, started_cpu = time.perf_counter(), time.thread_time()
    findings = detectors.scan(huge, REGEX_CATEGORIES)
    elapsed, elapsed_cpu = (time.perf_counter() - started) * 1000, (time.thread_time() - started_cpu) * 1000
    print(f"  1 MB prompt: scanned the first {settings.GATEHOUSE_GUARDRAIL_MAX_SCAN_CHARS} characters in {elapsed:.1f} ms "
          f"(CPU {elapsed_cpu:.1f} ms; {len(findings)} findings, the last ending at {findings[-1].end if findings else 0})")
    if failed:
        print(f"CPU p50 at or above the {TARGET_P50_MS} ms target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
