"""One package per channel: each adapter owns its sending, its inbound routes and its provider's
vocabulary. The contract every adapter implements (`Channel`, `OutgoingMessage`, the send errors)
lives below the layers that queue and dispatch messages, in `messages.channel`."""
