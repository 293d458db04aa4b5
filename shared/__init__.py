"""Code shared by every Attune service: settings, logging, web helpers, database, events."""
