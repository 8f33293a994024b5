"""Every table the migrations manage: importing a models module registers its tables."""

from store import models  # noqa: F401  (plans, audit, users, tokens, inbox)
from store import warehouse  # noqa: F401
from store.models import Base

metadata = Base.metadata
