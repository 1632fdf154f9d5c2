"""Autoscaling for LLMDeployments.

policy.py   pure decision: samples + replica counts + state -> Decision
queries.py  PromQL per metric type, scoped to one deployment
prometheus.py  async instant-query client with typed outcomes
detect.py   which vLLM metric names the pods expose
evaluate.py `evaluate_once`: the coordinator the operator calls from its timer
"""
