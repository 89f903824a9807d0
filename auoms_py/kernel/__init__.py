"""Kernel audit interface: the NETLINK_AUDIT protocol (netlink.py) and the rule struct (ruledata.py)."""
