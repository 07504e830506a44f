"""User accounts and their saved addresses."""
