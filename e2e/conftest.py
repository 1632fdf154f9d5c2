"""End-to-end scenarios. They run against whatever cluster the session fixtures give (see
llmops_sandbox.fixtures): the local sandbox by default, or the cluster named by
LLMOPS_TEST_KUBECONFIG (kind). Scenarios that must stop Prometheus or restart the operator
process run on the sandbox only."""
