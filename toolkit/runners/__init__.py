"""Runners execute device-side jobs: in a host process now, in containers or on devices later."""
