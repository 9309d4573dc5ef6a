"""The coder's review app: predictions -> a coder's decisions -> a `jsonl:` dataset."""
