"""The study's operations: units of work that combine storage and the pure trial rules.

Each function takes a session (one transaction), the protocol and `now`; none reads the clock.
"""
