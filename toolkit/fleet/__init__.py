"""A study on several devices at once, each through its own Docker engine's remote API.

inventory: which devices exist and how to reach them (fleet.toml); engines: connecting, the
device's identity and its images; run: one device run per device in parallel plus the fleet
manifest linking them; compare: the side-by-side table the fleet report shows.
"""
