"""Inference backends: one module per framework, each exposing run(job) -> result dict."""
