"""Pure domain rules of a clinical trial: protocol, doses, visits, triage, adherence, escalation.

Nothing in this package does I/O or reads the clock: time is always a parameter.
"""
