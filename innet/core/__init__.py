"""What every family shares: topology, plans, events, phases and records, the network model
and timing, transport and group, configuration, and the one registry shape."""
