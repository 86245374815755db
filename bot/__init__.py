"""The conversation: one channel-neutral core and an adapter per channel."""
