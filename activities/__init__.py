"""Side effects of a change request, one module per concern.

Each module exposes a class whose methods are Temporal activities (named by the contract in
``workflows.contract``); the worker instantiates them with the service settings.
"""
