"""The chat trigger service: Slack in (mentions, direct messages, thread replies, the slash
command, buttons), Temporal behind (through `honk.changes`). Slack out — the status message
and thread replies of a running request — is the notifier's job (honk/slack/delivery.py); all
Block Kit, the service's replies included, is rendered in honk/slack/blocks.py.

    parse.py    what people write → requests, steering, commands (pure)
    guard.py    replay protection and event de-duplication (Bolt middleware)
    service.py  start / steer / decide through honk.changes; replies
    app.py      the Bolt app: which input goes to which handler
    server.py   HTTP mode (FastAPI + uvicorn) and Socket Mode; `honk chat`
"""
