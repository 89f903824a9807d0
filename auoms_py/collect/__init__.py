"""Collectors: where audit records come from (kernel netlink, multicast, auditd plugin stream, log file)."""
