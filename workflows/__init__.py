"""Workflow definitions: orchestration only, no I/O."""
