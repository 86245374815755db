"""Time: one tick plans what is due into the database; the dispatcher sends the outbox."""
