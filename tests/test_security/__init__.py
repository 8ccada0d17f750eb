"""Security tests (issue #7 item 3): ACL users, tenant ids, TLS, credential rotation, redaction."""
