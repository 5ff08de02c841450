"""PII/PHI detection and policies on the request path: see issue "Guardrails and compliance-aware routing"."""
