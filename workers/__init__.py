"""Worker entry points: which task queues host the workflow and which activities."""
