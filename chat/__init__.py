"""The chat trigger service: Slack in (mentions, direct messages, thread replies, the slash
command, buttons), Temporal behind (through `honk.changes`). Slack out — the status message
and thread replies of a running request — is the notify activity's job (activities/notify.py).

    parse.py    what people write → requests, steering, commands (pure)
    guard.py    replay protection and event de-duplication (Bolt middleware)
    service.py  start / steer / decide through honk.changes; replies
    blocks.py   Block Kit the service sends (modal, status, list)
    app.py      the Bolt app: which input goes to which handler
    server.py   HTTP mode (FastAPI + uvicorn) and Socket Mode; `honk chat`
"""
