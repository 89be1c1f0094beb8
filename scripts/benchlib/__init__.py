"""The benchmarks: each module measures one phase side by side with its peer in one run (medians of several
runs, min and max); `scripts/bench` runs them all and draws the chart. Launchers: scripts/bench_*."""
