"""Every `workflow.patched` id of the workflow, in one place, with the change it guards.

A run that started before a deploy replays the old branch; a new run records the marker and
takes the new one (README, "Changing the workflow safely"). Never reuse an id for a different
change; tests/workflow/histories holds a recorded run of each side.
"""

from __future__ import annotations

# An approval names the commit its approver saw; a started merge runs to its end.
APPROVAL_BINDS_COMMIT = "approval-binds-commit"
# Step timeouts from `.honk.toml`, retries bounded by `outage_tolerance` (was: fixed hours, five tries).
BOUNDED_WAITS = "bounded-waits"
# A merge repair after continue-as-new re-reads the build targets (older runs did not carry them).
CARRY_PREPARED = "carry-prepared"
# The agent's passing check run of the pushed tree stands for the CHECKING step.
CHECKED_BY_AGENT = "checked-by-agent"
# A status notice that a later queued notice rewrites anyway is skipped.
COALESCE_STATUS = "coalesce-status"
# A refused `decide` update leaves a line in the timeline.
DECIDE_RECORDS_REFUSALS = "decide-records-refusals"
# A cancel that arrives after the merge leaves the request MERGED (it used to end it CANCELLED).
MERGED_STAYS_MERGED = "merged-stays-merged"
# The merge commit's subject and body as people write them (each round, the feedback).
MERGE_MESSAGE = "merge-message"
# Notices go out in order from a queue instead of holding up the pipeline.
QUEUED_NOTICES = "queued-notices"
# With nothing to build, a summary page is published for review.
REVIEW_SUMMARY = "review-summary"
# A status notice waits until its stage has lasted a second (a shorter stage is overtaken).
SETTLED_STATUS = "settled-status"
# Each build of a request gets a higher build number, even two in one second.
UNIQUE_BUILDS = "unique-build-numbers"
