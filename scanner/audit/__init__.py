"""Model-level audit: is a model backdoored, and towards which class, from clean images alone.

``audit(model, clean)`` searches, by queries to the ONNX session only, for a small trigger that
sends held-in clean images to each class (``search``, over the families in ``triggers``), measures
it on held-back images and judges the model (``verdict``).
"""

from .run import AuditResult, ClassAudit, audit
from .search import Budget
from .verdict import AuditVerdict

__all__ = ["AuditResult", "AuditVerdict", "Budget", "ClassAudit", "audit"]
