"""The ten business domains; each package owns one database and imports only `kit` and itself."""
