"""Per-request git workspaces on this host; `Workspaces` is the one entry point.

Where each part lives: `workspaces` (the facade: locations, locks, materialising a request's
workspace), `mirror` (the host's cache of a remote), `pool` (idle workspaces handed to the
next request), `sync` (the work branch: reset, commit, push, diff), `locks` (flocks),
`paths` (names and trees on disk), `request` (validating a WorkspaceRef, its errors).
"""

from honk.workspace.workspaces import Workspaces, WorkspaceState

__all__ = ["Workspaces", "WorkspaceState"]
