# The test command (README): lint, type-check, then the whole suite.
PY ?= python

.PHONY: test lint typecheck pytest migration _migration

test: lint typecheck pytest

lint:
	$(PY) -m ruff check .
	$(PY) -c "from importlinter.cli import lint_imports_command; lint_imports_command()"

typecheck:
	$(PY) -m mypy

# The long simulations run in a process of their own, so their timing is their own.
pytest:
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

# Regenerate the initial schema migration from storage/models.py (before the first release only).
migration:
	flock /tmp/engage-migration.lock $(MAKE) _migration PY=$(PY)

_migration:
	rm -f storage/migrations/versions/0001_initial_schema.py /tmp/engage-migration.db
	mv storage/migrations/versions/0002_audit_append_only.py /tmp/engage-0002.py
	$(PY) -c "from alembic import command; from storage.migrate import alembic_config; \
	command.revision(alembic_config('sqlite+aiosqlite:////tmp/engage-migration.db'), \
	message='initial schema', autogenerate=True, rev_id='0001')" ; \
	mv /tmp/engage-0002.py storage/migrations/versions/0002_audit_append_only.py
	sed -i '/^Create Date/d' storage/migrations/versions/0001_initial_schema.py
