"""Sharing built images with other labs and with devices that have no network (issue 9).

`registry`: push to and pull from a registry, the pushed digests kept in a lock file so every
later pull gets exactly those bytes. `archive`: docker-save tarballs with a sidecar manifest for
air-gapped devices. `verify`: does an image (built, pulled or loaded) hold what the matrix pins?
Host side only: these modules use the Docker SDK.
"""
