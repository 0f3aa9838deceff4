"""Honk's own git on the worker: the one hardened runner (`runner`), credentials handed to
git per command (`credentials`, answered by the `askpass` script), branch names (`refs`)
and remote branches (`branches`).

Nothing is imported here, so reading configuration (which needs `refs` and `credentials`)
never loads GitPython.
"""
