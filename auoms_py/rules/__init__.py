"""Audit rules: auditctl syntax (syntax.py), kernel encoding and listing (encode.py), keeping the kernel in sync
(sync.py) and reloading on edit (watch.py). Generated constant tables: tables.py (tools/gen_rule_tables.py)."""
