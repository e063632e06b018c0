"""edgerepro: containerised reproducibility toolkit for deep learning on embedded devices.

`toolkit.device` runs inside the images (Python 3.6+, stdlib + numpy + the framework under test);
everything else is the host side (Python 3.11).
"""
