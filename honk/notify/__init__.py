"""Tell the requester what happened: status changes, build ready, approval needed, merged.

    routing.py       which notifiers a notice goes to (`make_notifier`, `ChatNotifier`)
    log_notifier.py  every notice as a log line and a per-request JSON-lines record
    exactly_once.py  what was posted, per request, and which attempt of which notification
                     this is — so a retried notification never posts twice

Slack delivery and its Block Kit live with the rest of the Slack UI (honk/slack/); the
Temporal activity is the adapter in activities/notify.py.
"""
