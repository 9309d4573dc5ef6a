"""The coding service: `cli.py serve` keeps a program, its model and the knowledge base loaded and
codes the notes sent to it over HTTP (`service.app`); `predict --server` codes a batch with it
(`service.client`), so that a run pays the start-up (DSPy, medspaCy, the search index) once, not
every time. `service.serving` binds and runs an app on a socket, for the review app too."""
