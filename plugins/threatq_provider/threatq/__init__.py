"""threatq package."""
