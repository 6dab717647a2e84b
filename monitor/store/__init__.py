"""The store: SQLModel tables, the engine, and the queries the rest of the service uses."""
