"""A sentence a page prints together with the premises it rests on.

Every number or comparison the report states comes from a function that returns ``Claim``s: the
sentence, and what it assumes (the writers compared, the trials or rounds, the target, the test or
interval), so that a page can print the premises under the sentence and a test can check them
without parsing prose."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Claim:
    text: str
    premises: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def premise_text(self) -> str:
        """The premises as one short line: ``writers 1; n = 5 trials; ...``."""
        return "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.premises.items())

    def markdown(self) -> str:
        """The sentence, and its premises in small print after it."""
        return self.text + (f" <small>[{self.premise_text()}]</small>" if self.premises else "")
