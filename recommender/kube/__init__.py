"""Kubernetes adapters: clients, leader election, discovery, status and checkpoint writes."""
