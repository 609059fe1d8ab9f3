"""The computing-power network: topology, compute pools traded on the market, jobs, the scheduler and
the pool workers that run placed jobs (docs/COMPUTE.md)."""
