"""Security helpers, as a named submodule: Redis ACL users per service or tenant, tenant-id rules,
and redaction of secrets in logs, errors, dead letters and metrics.

```python
from bus.security import service_acl, tenant_acl, register_secret
print(service_acl("email", channels=["emailservice::v7"], roles=["consume"]).command_line())
```
"""

from __future__ import annotations

from ._acl import AclUser, add_password_args, remove_password_args, service_acl, tenant_acl
from ._redact import (
    SECRET,
    install_log_redaction,
    redact,
    redact_labels,
    redact_text,
    register_secret,
    register_secrets,
)
from ._tenant import check_tenant_id, tenant_prefix

__all__ = [
    "SECRET",
    "AclUser",
    "add_password_args",
    "check_tenant_id",
    "install_log_redaction",
    "redact",
    "redact_labels",
    "redact_text",
    "register_secret",
    "register_secrets",
    "remove_password_args",
    "service_acl",
    "tenant_acl",
    "tenant_prefix",
]
