"""The offline classifier's general-purpose lexicon: a few groups of everyday English synonyms.

Source: hand-written for this project from general English usage (the kind of synonyms any thesaurus lists
under "change", "cancel", "pay back", ...). It was not drawn from, or tuned on, any labelled data set. As a
guard, no word here occurs in the product's labelled sets (the travel calls of ``sample-data/`` and the seed
spreadsheet) unless it also occurs in a bundled task's prompt: a word those sets use but no prompt does would let
the sets' own wording leak into the classifier and flatter its measured accuracy. ``tests/unit/test_local_models.py``
enforces this (``test_the_lexicon_holds_no_word_of_the_labelled_sets_that_no_prompt_uses``), so some obvious
synonyms are deliberately absent.

How the classifier uses it: a word of a group also counts as the group, so a record saying "repay" meets a
category whose prompt says "refund". No group names a category, and a group favours a category only through the
words that category's own prompt text uses; a group none of a prompt's words belong to changes nothing.
"""

from __future__ import annotations

GROUPS: dict[str, str] = {
    "change": "change alter modify edit update switch move shift postpone rearrange",
    "cancel": "cancel cancellation annul rescind revoke abort terminate",
    "money-back": "refund repay repayment rebate recompense",
    "fault": "error defect malfunction crash regression",
    "displeasure": "dissatisfaction dissatisfied displeased discontent aggrieved indignant",
    "payment": "pay payment paying remit remittance instalment installment",
    "reward": "loyalty reward miles points",
    "needs": "accommodation assistance wheelchair mobility dietary medical",
    "rules": "visa visas passport",
    "purchase": "book booking reserve reservation procure",
    "docs": "documentation docs handbook",
    "security": "security phishing suspicious credentials compromise",
    "wish": "request capability proposal",
    "learn": "education understanding tuition",
    "digital": "website app online login email",
}
