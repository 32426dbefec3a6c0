"""The worker's metric name prefix, the fixed sets of every label's values, and the histograms' buckets: what
the exported series are named and may be labelled with, apart from how they are updated (:mod:`stream_app.metrics`).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "content_tagger_"
OUTCOMES: Final[tuple[str, ...]] = ("tagged", "review", "duplicate", "deadletter")
"""The four output topics; the bounded ``outcome`` label."""
ROUTES: Final[tuple[str, ...]] = ("tagged", "review")
"""Where the model sent a prediction that a person later judged; the bounded ``route`` label. Online precision
of what the platform shows is the ``tagged`` route; the ``review`` route judges the items the model was unsure of."""
VERDICTS: Final[tuple[str, ...]] = ("accepted", "corrected", "reported")
"""Every verdict a feedback record can carry: a reviewer accepted or corrected a suggestion, or reported
a wrong tag on a tagged item; the bounded ``verdict`` label."""
SIGN_IN_OUTCOMES: Final[tuple[str, ...]] = ("signed_in", "wrong", "limited")
"""What a sign-in on the review pages came to; the bounded ``outcome`` label of the sign-in counter."""
MAX_JUDGED_VERSIONS: Final = 64
"""Most model versions the judged-prediction counters hold: the ``version`` label is read off records, so it is
bounded by count; judgements of a further version count only in their verdict."""
MATCHES: Final[tuple[str, ...]] = ("exact", "near")
"""How a dropped copy matched a title already seen; the bounded ``match`` label."""
SKIPPED_TOPICS: Final[tuple[str, ...]] = ("review", "tagged", "feedback", "title_index", "sign_outs")
"""The role of a topic a skipped record came from; the bounded ``topic`` label (a role, not the topic's name, which
is a setting). A malformed input record is not skipped: it goes to the dead-letter topic."""
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INFERENCE_BUCKETS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)
REPLICATION_BUCKETS: Final = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
