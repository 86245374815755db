"""Loopback fakes of the providers' HTTP APIs, for end-to-end tests with the real clients."""
