"""The "what changed" part of the install page and of the summary page (a change with nothing
to build): changed files, diff stat, the work branch or the forge's compare view, and what the
checks said. File names come from the repository: every value is redacted and escaped."""

from __future__ import annotations

import html

from honk.redact import redact
from honk.workflows.contract_review import Review, first_files

FILES_SHOWN = 50


def review_section(review: Review | None, diff_stat: str | None = None) -> str:
    """HTML fragment; `diff_stat` is the publisher's own stat, used when the review has none."""
    e = html.escape
    parts = []
    stat = (review.diff_stat if review else None) or diff_stat
    if review and review.changed_files:
        shown, more = first_files(review.changed_files, review.changed_count, FILES_SHOWN)
        items = "\n".join(f"<li><code>{e(redact(path))}</code></li>" for path in shown)
        rest = f'\n<li class="muted">and {more} more</li>' if more else ""
        parts.append(f'<h2>Changed files</h2>\n<ul id="changed-files">\n{items}{rest}\n</ul>')
    if stat:
        parts.append(f'<pre id="diffstat">{e(redact(stat))}</pre>')
    if review and review.compare and review.compare.startswith(("https://", "http://")):
        label = f"Compare {review.branch} with its base" if review.branch else "Compare with the base"
        parts.append(f'<p id="branch"><a href="{e(review.compare)}">{e(label)}</a></p>')
    elif review and review.branch:
        parts.append(f'<p id="branch">Work branch <code>{e(review.branch)}</code></p>')
    if review and review.checks:
        parts.append(f'<p class="text muted" id="checks">{e(redact(review.checks))}</p>')
    return "\n".join(parts)
