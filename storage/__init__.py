"""Storage: the schema, every query, the outbox, the audit trail, migrations."""
