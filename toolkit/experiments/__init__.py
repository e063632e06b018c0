"""Experiments: declarative TOML specs, validated into typed objects and expanded into cells."""
