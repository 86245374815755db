"""`engage demo` and `engage chat`: the whole product on a simulated clock and the sandbox channel.

Nothing here is domain logic: the demo sets a study up through the same study operations as the
admin commands, then drives the real scheduler tick, dispatcher and conversation core, with
sandbox adapters registered under the real channel names and simulated people answering.
"""
