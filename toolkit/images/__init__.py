"""Building and sharing the per-framework images: one module per job, host side only.

What goes in:
- `matrix`: containers/matrix.toml (every pinned version) validated into typed objects;
- `wheels`: the per-platform wheelhouse, downloaded on the host and hashed;
- `bases`: base images without a registry (debootstrap, then import).

One image:
- `naming`: its tag, its labels, its version manifest's path, the device-code digest, and the
  labels any build of a matrix entry carries (what `verify` and `load` compare);
- `build`: the build context, the rendered Dockerfile, `invoke build` and `invoke base`;
- `smoke`: the smoke test after every build and its ledger of passes, run_in_image.

Around them:
- `engine`: this machine's Docker engine, its default platform, and `find_image`, the one way
  to ask an engine whether it holds an image;
- `doctor`: is this machine ready to build and run the images (`invoke doctor`);
- `share`: the images through a registry pinned by digest, as archives for offline devices,
  and checked against the matrix wherever they came from (`invoke push/pull/save/load/verify`).

The data stays in containers/ (matrix.toml, the Dockerfile templates, the wheelhouse).
"""
