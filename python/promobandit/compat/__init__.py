"""Front ends that speak other libraries' APIs over promobandit's native kernels.

- ``promobandit.compat.mabwiser``: MABWiser's ``MAB`` and ``LearningPolicy`` (swap the
  import line of a MABWiser program);
- ``promobandit.compat.obp``: Open Bandit Pipeline's ``OffPolicyEvaluation`` and its
  estimators.

Import the module you need; this package imports neither, so that each stays optional.
"""
