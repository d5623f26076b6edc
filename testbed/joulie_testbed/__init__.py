"""joulie-tasks' test bed: never part of the operator's wheel or image.

- ``emulator``: an HTTP Kubernetes API emulator (nodes, pods, NodePowerProfiles, watches);
- ``procs``: the one process harness (free ports, waits, redis-server, operator processes)
  used by the tests, the benchmarks and the demo;
- ``controlplane``: a real etcd + kube-apiserver from ``KUBEBUILDER_ASSETS`` (envtest);
- ``demo``: ``joulie-tasks demo``, registered through the ``joulie_tasks.commands`` entry point.
"""
