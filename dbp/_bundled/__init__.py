"""Schema files shipped in the wheel: top-level ``sql/`` and ``mongo_migrations/`` land here."""
