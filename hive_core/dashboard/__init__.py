"""The operator dashboard: HTTP on loopback, one-time login links, session cookies."""
