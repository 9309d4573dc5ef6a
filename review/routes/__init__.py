"""HTTP routes of the review app, one module per resource: the queue, a note and its
decisions, code search, the summary."""
