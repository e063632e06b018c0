"""Measurement core: sampling protocol, summary statistics, process memory."""
