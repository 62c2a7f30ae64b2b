"""Driver adapters: one per driver family, imported only when a connection of that driver is wrapped."""
