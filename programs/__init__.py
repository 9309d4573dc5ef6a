"""The coding pipelines (MedCodER, Code Like Humans, verification) and what they share."""
