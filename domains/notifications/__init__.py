"""Messages to users, produced from other domains' events."""
