"""The coding agent step: a backend edits the workspace; Honk meters, reviews, commits and
pushes each round."""

from activities.agent.activity import AgentActivities

__all__ = ["AgentActivities"]
