"""``python -m bench``: throughput and memory of the connector as ratios against baselines
measured in the same run on the same bytes (the machines are shared and noisy, so absolute
figures say little). See ``bench/__main__.py`` for the figures and README "Performance"."""
